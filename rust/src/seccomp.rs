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

/// A filter as a binary search on the syscall number: a syscall the filter does
/// not name gets `default`, one it names without conditions `matched`, each after
/// about log2(n) comparisons; those with argument conditions (and a foreign
/// architecture) go on to `conditional`, seccompiler's program for them alone.
///
/// seccompiler's own filter of every name tests them one after another (~4.5
/// instructions each: 543 for the default profile, 463 of them for the 69 names
/// without conditions). Loading a filter costs the kernel about 0.35 µs per
/// instruction here (its JIT) plus ~20 µs: ~275 µs of each container's start with
/// the default profile, ~150 µs this way. The verdicts are the same (tested).
/// The most syscall names one filter's dispatch takes (its jumps are 8-bit).
pub const DISPATCH_MAX: usize = 120;

pub fn with_dispatch(conditional: BpfProgram, plain: &[u32], conds: &[u32], default: u32, matched: u32) -> BpfProgram {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    // (number, named without conditions), sorted; a number is in one list only
    let mut nrs: Vec<(u32, bool)> = plain.iter().map(|&n| (n, true)).chain(conds.iter().map(|&n| (n, false))).collect();
    nrs.sort_unstable();
    nrs.dedup_by_key(|e| e.0);
    let tree_len = (2 * nrs.len()).saturating_sub(1);
    // [0] load arch, [1] foreign: to `conditional`, [2] load nr, [3..] the tree, then
    // ret default, ret matched, `conditional`; the leaves' 8-bit jumps reach past the tree
    assert!(tree_len + 3 <= 255, "too many syscalls for one dispatch: {}", nrs.len());
    let ret_default = 3 + tree_len;
    let ret_matched = ret_default + 1;
    let cond_start = ret_matched + 1;
    let ins = |code, jt, jf, k| seccompiler::sock_filter { code, jt, jf, k };
    let mut out = Vec::with_capacity(cond_start + conditional.len());
    out.push(ins(LD_W_ABS, 0, 0, 4)); // seccomp_data.arch
    out.push(ins(JEQ_K, 0, (cond_start - 2) as u8, AUDIT_ARCH_X86_64));
    out.push(ins(LD_W_ABS, 0, 0, 0)); // seccomp_data.nr
    struct Targets {
        default: usize,
        matched: usize,
        cond: usize,
    }
    // The node at out.len() over nrs: one number is a leaf (equal: matched or on to the
    // conditions; else the default), more split at the middle one (jge: the right half,
    // which follows the left half).
    fn node(out: &mut Vec<seccompiler::sock_filter>, nrs: &[(u32, bool)], t: &Targets) {
        let i = out.len();
        let rel = |to: usize| (to - i - 1) as u8;
        if let [(nr, plain)] = nrs {
            let hit = if *plain { t.matched } else { t.cond };
            out.push(seccompiler::sock_filter { code: JEQ_K, jt: rel(hit), jf: rel(t.default), k: *nr });
            return;
        }
        let mid = nrs.len() / 2;
        out.push(seccompiler::sock_filter { code: JGE_K, jt: (2 * mid - 1) as u8, jf: 0, k: nrs[mid].0 });
        node(out, &nrs[..mid], t);
        node(out, &nrs[mid..], t);
    }
    if !nrs.is_empty() {
        node(&mut out, &nrs, &Targets { default: ret_default, matched: ret_matched, cond: cond_start });
    }
    debug_assert_eq!(out.len(), ret_default);
    out.push(ins(RET_K, 0, 0, default));
    out.push(ins(RET_K, 0, 0, matched));
    out.extend(conditional);
    out
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
        // Up to DISPATCH_MAX names: those without conditions go in the dispatch and
        // seccompiler compiles the others; a longer list (an allow-list profile) as it is.
        let dispatch = rules.len() <= DISPATCH_MAX;
        let plain: Vec<u32> = rules.iter().filter(|(_, r)| dispatch && r.is_empty()).map(|(&nr, _)| nr as u32).collect();
        if dispatch {
            rules.retain(|_, r| !r.is_empty());
        }
        let conds: Vec<u32> = rules.keys().map(|&nr| nr as u32).collect();
        let filter = SeccompFilter::new(rules, d.default.to_seccompiler(), d.matched.to_seccompiler(), TargetArch::x86_64)
            .map_err(|e| SpecError::new(field.clone(), "", e.to_string()))?;
        let prog: BpfProgram = filter.try_into().map_err(|e: seccompiler::BackendError| SpecError::new(field, "", e.to_string()))?;
        let (default, matched) = (u32::from(d.default.to_seccompiler()), u32::from(d.matched.to_seccompiler()));
        out.filters.push(if dispatch { with_dispatch(prog, &plain, &conds, default, matched) } else { prog });
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

    /// A classic BPF interpreter for what the filters use, over seccomp_data
    /// (nr, arch, instruction pointer, six 64-bit arguments).
    fn run(prog: &[seccompiler::sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for a in args {
            data.extend_from_slice(&a.to_ne_bytes());
        }
        let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
        loop {
            let i = &prog[pc];
            pc += 1;
            let k = i.k;
            match i.code {
                0x20 => a = u32::from_ne_bytes(data[k as usize..k as usize + 4].try_into().unwrap()),
                0x00 => a = k,
                0x01 => x = k,
                0x60 => a = mem[k as usize],
                0x61 => x = mem[k as usize],
                0x02 => mem[k as usize] = a,
                0x03 => mem[k as usize] = x,
                0x07 => x = a,
                0x87 => a = x,
                0x54 => a &= k,
                0x5c => a &= x,
                0x44 => a |= k,
                0x06 => return k,
                0x16 => return a,
                0x05 => pc += k as usize,
                0x15 | 0x25 | 0x35 | 0x45 | 0x1d | 0x2d | 0x3d | 0x4d => {
                    let v = if i.code & 0x08 != 0 { x } else { k };
                    let t = match i.code & 0xf0 {
                        0x10 => a == v,
                        0x20 => a > v,
                        0x30 => a >= v,
                        _ => a & v != 0,
                    };
                    pc += if t { i.jt } else { i.jf } as usize;
                }
                c => panic!("opcode {c:#x} not interpreted"),
            }
        }
    }

    #[test]
    fn the_dispatch_keeps_every_verdict() {
        // the default profile's shapes: plain names, masked flags, an argument list, a socket family
        let mut syscalls: Vec<(String, Vec<Vec<Cond>>)> =
            ["mount", "umount2", "pivot_root", "keyctl", "bpf", "reboot", "kexec_load", "open_by_handle_at"]
                .iter()
                .map(|n| (n.to_string(), vec![]))
                .collect();
        let bit = |b: u64| vec![Cond { index: 0, op: "masked_eq".into(), value: b, mask: b }];
        syscalls.push(("clone".into(), vec![bit(0x10000000), bit(0x20000000), bit(0x40000000)]));
        syscalls.push(("socket".into(), vec![vec![Cond { index: 0, op: "eq".into(), value: 40, mask: 0 }]]));
        syscalls.push((
            "personality".into(),
            vec![vec![Cond { index: 0, op: "ne".into(), value: 0, mask: 0 }, Cond { index: 0, op: "ne".into(), value: 8, mask: 0 }]],
        ));
        for (default, matched) in [(Action::Allow, Action::Errno(1)), (Action::Errno(38), Action::Allow)] {
            let d = FilterDesc { default: default.clone(), matched, syscalls: syscalls.clone() };
            let ours = compile(std::slice::from_ref(&d)).unwrap().filters.pop().unwrap();
            let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
            for (name, alts) in &d.syscalls {
                let e = rules.entry(syscalls::number(name).unwrap()).or_default();
                for conds in alts {
                    let c = conds
                        .iter()
                        .map(|c| SeccompCondition::new(c.index, SeccompCmpArgLen::Qword, op("t", c).unwrap(), c.value).unwrap())
                        .collect();
                    e.push(SeccompRule::new(c).unwrap());
                }
            }
            let plain: BpfProgram = SeccompFilter::new(rules, default.to_seccompiler(), d.matched.to_seccompiler(), TargetArch::x86_64)
                .unwrap()
                .try_into()
                .unwrap();
            assert!(ours.len() < plain.len(), "{} >= {}", ours.len(), plain.len());
            for nr in (0..=460).chain([0x4000_0000 | 165, u32::MAX]) {
                for arg in [0u64, 8, 40, 0x10000000, 0x30000011, u64::MAX] {
                    for arch in [0xC000_003E, 0x4000_0003] {
                        let args = [arg, 0, 0, 0, 0, 0];
                        assert_eq!(run(&ours, nr, arch, args), run(&plain, nr, arch, args), "nr {nr} arg {arg:#x} arch {arch:#x}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_long_list_is_compiled_as_it_is() {
        // an allow-list profile, as docker's: more names than a dispatch takes
        let names: Vec<(&str, i64)> = syscalls::X86_64.iter().copied().take(DISPATCH_MAX + 30).collect();
        let plain: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
        let p = compile(&[desc(Action::Errno(1), Action::Allow, &plain)]).unwrap();
        let allowed: std::collections::HashSet<u32> = names.iter().map(|(_, nr)| *nr as u32).collect();
        for nr in 0..460u32 {
            let want = if allowed.contains(&nr) { libc::SECCOMP_RET_ALLOW } else { libc::SECCOMP_RET_ERRNO | 1 };
            assert_eq!(run(&p.filters[1], nr, 0xC000_003E, [0; 6]), want, "nr {nr}");
        }
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
