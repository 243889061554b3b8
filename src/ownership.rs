//! What is ours: the names and marks of our chains and rules, in whatever form a rule was
//! read (our model, iptables-save text, nf_tables, a direct entry).

/// Prefix of every chain we own.
pub const CHAIN_PREFIX: &str = "KUMA_MESH";
/// Prefix of every comment we write; kumactl uses the same, so its rules are ours too.
pub const COMMENT_PREFIX: &str = "kuma/mesh/transparent/proxy";

/// True for a rule we own: inside one of our chains, carrying our comment (`mentions` says
/// whether the rule holds a text), or jumping into one of our chains (it cannot outlive the
/// chain, so it is ours even without a comment; `targets` are what it jumps to).
pub fn is_ours<T: AsRef<str>>(
    chain: &str,
    mentions: impl Fn(&str) -> bool,
    mut targets: impl Iterator<Item = T>,
) -> bool {
    is_owned_chain(chain)
        || mentions(COMMENT_PREFIX)
        || targets.any(|target| is_owned_chain(target.as_ref()))
}

/// True for chains we own: `KUMA_MESH_*` (kumactl's chains included).
pub fn is_owned_chain(name: &str) -> bool {
    name.strip_prefix(CHAIN_PREFIX)
        .is_some_and(|rest| rest.starts_with('_'))
}

/// Whether an option names what a rule jumps or goes to.
pub fn is_jump_option(arg: &str) -> bool {
    matches!(arg, "-j" | "--jump" | "-g" | "--goto")
}

/// What an argument list jumps or goes to: the value of each `-j`, `--jump`, `-g` and
/// `--goto` (None for one given without a value), in order.
pub fn jump_targets<'a, S: AsRef<str> + 'a>(
    args: &'a [S],
) -> impl Iterator<Item = Option<&'a str>> + 'a {
    args.iter()
        .enumerate()
        .filter(|(_, arg)| is_jump_option(arg.as_ref()))
        .map(move |(i, _)| args.get(i + 1).map(AsRef::as_ref))
}

/// The first target an argument list jumps or goes to.
pub fn jump_target<S: AsRef<str>>(args: &[S]) -> Option<&str> {
    jump_targets(args).flatten().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kuma_mesh_underscore_chains_are_ours() {
        assert!(is_owned_chain("KUMA_MESH_OUTBOUND"));
        assert!(!is_owned_chain("KUMA_MESHY"));
        assert!(!is_owned_chain("KUMA_MESH"));
        assert!(!is_owned_chain("OUTPUT"));
    }

    #[test]
    fn jump_targets_in_every_spelling() {
        let args = ["-p", "tcp", "--jump", "A", "-g", "B", "-j"];
        assert_eq!(
            jump_targets(&args).collect::<Vec<_>>(),
            [Some("A"), Some("B"), None]
        );
        assert_eq!(jump_target(&args), Some("A"));
        assert_eq!(jump_target(&["-p", "tcp"]), None);
    }
}
