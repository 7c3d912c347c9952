//! Seccomp: filter descriptions compiled to BPF by `seccompiler` (rust-vmm's
//! compiler, used by Firecracker), once per profile, and loaded by the child
//! with one raw seccomp(2) call each, last before execve.
//!
//! A profile may mix actions (allow most, ENOSYS for clone3, EPERM for the
//! rest). seccompiler's filters carry one match and one mismatch action, so a
//! profile becomes a short stack of filters; the kernel runs them all and
//! keeps the highest-precedence action, and among equal actions the most
//! recently loaded filter's value (kernel/seccomp.c), which is how the
//! specific errnos override the profile's default.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

use crate::errors::SpecError;
use crate::syscalls;

/// What a filter returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(u32),
    KillProcess,
    KillThread,
    Trap,
    Log,
}

impl Action {
    pub fn parse(field: &str, name: &str, errno: u32) -> Result<Action, SpecError> {
        Ok(match name {
            "allow" => Action::Allow,
            "errno" => Action::Errno(errno),
            "kill_process" | "kill" => Action::KillProcess,
            "kill_thread" => Action::KillThread,
            "trap" => Action::Trap,
            "log" => Action::Log,
            other => {
                return Err(SpecError::new(
                    field,
                    other,
                    "expected allow, errno, kill_process, kill_thread, trap or log",
                ))
            }
        })
    }

    fn to_seccompiler(&self) -> SeccompAction {
        match self {
            Action::Allow => SeccompAction::Allow,
            Action::Errno(e) => SeccompAction::Errno(*e),
            Action::KillProcess => SeccompAction::KillProcess,
            Action::KillThread => SeccompAction::KillThread,
            Action::Trap => SeccompAction::Trap,
            Action::Log => SeccompAction::Log,
        }
    }
}

/// One argument comparison: `args[index] OP value` (with `mask` for masked_eq).
#[derive(Debug, Clone)]
pub struct Cond {
    pub index: u8,
    pub op: String,
    pub value: u64,
    pub mask: u64,
}

/// One filter: syscalls that match (unconditionally when a syscall has no
/// rules; otherwise when any rule's conditions all hold) get `matched`,
/// everything else `default`.
#[derive(Debug, Clone)]
pub struct FilterDesc {
    pub default: Action,
    pub matched: Action,
    pub syscalls: Vec<(String, Vec<Vec<Cond>>)>,
}

/// Compiled filters, in loading order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Program {
    pub filters: Vec<BpfProgram>,
    /// Names the profile gave that this architecture has no number for (ignored, as libseccomp does).
    pub skipped: Vec<String>,
}

fn op(field: &str, c: &Cond) -> Result<SeccompCmpOp, SpecError> {
    Ok(match c.op.as_str() {
        "eq" => SeccompCmpOp::Eq,
        "ne" => SeccompCmpOp::Ne,
        "lt" => SeccompCmpOp::Lt,
        "le" => SeccompCmpOp::Le,
        "gt" => SeccompCmpOp::Gt,
        "ge" => SeccompCmpOp::Ge,
        "masked_eq" => SeccompCmpOp::MaskedEq(c.mask),
        other => return Err(SpecError::new(field, other, "expected eq, ne, lt, le, gt, ge or masked_eq")),
    })
}

/// The first filter of every program: x86_64 only, and no x32 ABI.
///
/// seccompiler's filters check the architecture (a foreign one kills the
/// process) but match syscall numbers as given, and an x32 call is an
/// x86_64-arch call with bit 30 set in its number: a deny-list would let
/// `mount | 0x40000000` through on a kernel built with x32 support. This
/// four-instruction prefix answers every x32 call with ENOSYS, as
/// libseccomp's profiles do for ABIs they do not list.
pub fn x32_guard() -> BpfProgram {
    const LD_W_ABS: u16 = 0x00 | 0x00 | 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
    const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let ins = |code, jt, jf, k| seccompiler::sock_filter { code, jt, jf, k };
    vec![
        ins(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        ins(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        ins(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        ins(JGE_K, 0, 1, X32_SYSCALL_BIT),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

pub fn compile(descs: &[FilterDesc]) -> Result<Program, SpecError> {
    let mut out = Program::default();
    if !descs.is_empty() {
        out.filters.push(x32_guard());
    }
    for (fi, d) in descs.iter().enumerate() {
        let field = format!("seccomp[{fi}]");
        if d.default == d.matched {
            return Err(SpecError::new(field, format!("{:?}", d.default), "the default and the matched action are the same"));
        }
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for (name, alternatives) in &d.syscalls {
            let Some(nr) = syscalls::number(name) else {
                out.skipped.push(name.clone());
                continue;
            };
            let entry = rules.entry(nr).or_default();
            for (ri, conds) in alternatives.iter().enumerate() {
                let cfield = format!("{field}.{name}[{ri}]");
                let conds = conds
                    .iter()
                    .map(|c| {
                        SeccompCondition::new(c.index, SeccompCmpArgLen::Qword, op(&cfield, c)?, c.value)
                            .map_err(|e| SpecError::new(cfield.clone(), format!("{c:?}"), e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if conds.is_empty() {
                    continue;
                }
                entry.push(SeccompRule::new(conds).map_err(|e| SpecError::new(cfield.clone(), "", e.to_string()))?);
            }
        }
        let filter = SeccompFilter::new(rules, d.default.to_seccompiler(), d.matched.to_seccompiler(), TargetArch::x86_64)
            .map_err(|e| SpecError::new(field.clone(), "", e.to_string()))?;
        let prog: BpfProgram = filter.try_into().map_err(|e: seccompiler::BackendError| SpecError::new(field, "", e.to_string()))?;
        out.filters.push(prog);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(default: Action, matched: Action, names: &[&str]) -> FilterDesc {
        FilterDesc { default, matched, syscalls: names.iter().map(|n| (n.to_string(), vec![])).collect() }
    }

    #[test]
    fn unknown_names_are_skipped_and_reported() {
        let p = compile(&[desc(Action::Allow, Action::Errno(1), &["mount", "arm_fadvise64_64"])]).unwrap();
        assert_eq!(p.filters.len(), 2, "the x32 guard, then the filter");
        assert_eq!(p.filters[0], x32_guard());
        assert_eq!(p.skipped, vec!["arm_fadvise64_64".to_string()]);
    }

    #[test]
    fn same_actions_are_refused() {
        let e = compile(&[desc(Action::Allow, Action::Allow, &["read"])]).unwrap_err();
        assert_eq!(e.field, "seccomp[0]");
    }

    #[test]
    fn argument_conditions_compile() {
        let d = FilterDesc {
            default: Action::Errno(1),
            matched: Action::Allow,
            syscalls: vec![(
                "personality".into(),
                vec![vec![Cond { index: 0, op: "eq".into(), value: 0, mask: 0 }]],
            )],
        };
        assert!(!compile(std::slice::from_ref(&d)).unwrap().filters[1].is_empty());
        let mut bad = d;
        bad.syscalls[0].1[0][0].op = "like".into();
        assert!(compile(&[bad]).is_err());
    }
}
