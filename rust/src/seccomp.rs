//! Seccomp: filter descriptions compiled to BPF once per profile, and loaded by
//! the child with one raw seccomp(2) call, last before execve.
//!
//! A profile may mix actions (allow most, ENOSYS for clone3, EPERM for the
//! rest), so it is described as a short stack of filters, each with one match
//! and one mismatch action: the kernel would run them all and keep the
//! highest-precedence action, and among equal actions the most recently loaded
//! filter's value (kernel/seccomp.c), which is how the specific errnos override
//! the profile's default. `stacked` compiles that stack as it is (an x32 guard,
//! then one program per filter by `seccompiler`, rust-vmm's compiler, used by
//! Firecracker); `merge` writes one program with the same verdicts, which is
//! what `compile` hands the child whenever it fits (the default profile: 102
//! instructions instead of 3 filters of 337, ~105 µs less of each container's start).

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
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
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

/// The profile as a stack of filters, loaded one after another: the x32 guard, then one
/// seccompiler program per description. What `compile` loads when `merge` cannot make
/// one program of them, and the reference its verdicts are tested against.
pub fn stacked(descs: &[FilterDesc]) -> Result<Program, SpecError> {
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

/// Compile a profile: one program when `merge` can make one (the default profile and
/// any whose conditions fit), else the stack of filters (`stacked`).
pub fn compile(descs: &[FilterDesc]) -> Result<Program, SpecError> {
    let mut out = stacked(descs)?; // validates every description, names what it skips
    if let Some(one) = merge(descs) {
        out.filters = vec![one];
    }
    Ok(out)
}

// -- one program for a whole profile ---------------------------------------------
//
// Each filter loaded costs the kernel a conversion to eBPF and a JIT compilation
// (kernel/seccomp.c: seccomp_prepare_filter -> bpf_prog_create_from_user), most of it
// per instruction, plus a fixed part; every syscall then runs every filter. `merge`
// computes, for every syscall number, the verdict the kernel would reach over the whole
// stack (seccomp_run_filters: the highest-precedence action, among equal actions the
// most recently loaded filter's value) and writes one program that returns it: the
// architecture check, the x32 answer, a binary search on the number over the runs of
// equal verdicts, and the argument conditions of the few syscalls that have them,
// compiled tighter than seccompiler does (one JSET for "any of these flag bits").

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_RET_ACTION_FULL: u32 = 0xffff_0000;

/// The kernel's verdict over filters' return values in loading order.
pub fn stack_verdict(rets: &[u32]) -> u32 {
    let rank = |r: u32| (r & SECCOMP_RET_ACTION_FULL) as i32;
    let mut out = libc::SECCOMP_RET_ALLOW;
    for &r in rets.iter().rev() {
        if rank(r) < rank(out) {
            out = r;
        }
    }
    out
}

/// Where a jump goes: the next instruction, or a label placed later.
#[derive(Clone, Copy)]
enum To {
    Next,
    L(usize),
}

/// A forward-only assembler with labels; `finish` fails when a jump does not fit in 8 bits.
#[derive(Default)]
struct Asm {
    ins: Vec<(u16, To, To, u32)>,
    labels: Vec<Option<usize>>,
    rets: BTreeMap<u32, usize>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn here(&mut self, l: usize) {
        self.labels[l] = Some(self.ins.len());
    }
    fn emit(&mut self, code: u16, jt: To, jf: To, k: u32) {
        self.ins.push((code, jt, jf, k));
    }
    fn load(&mut self, off: u32) {
        self.emit(LD_W_ABS, To::Next, To::Next, off);
    }
    fn jump(&mut self, to: To) {
        if let To::L(_) = to {
            self.emit(JA, to, To::Next, 0);
        }
    }
    /// The shared `ret v` (emitted last).
    fn ret(&mut self, v: u32) -> To {
        if let Some(&l) = self.rets.get(&v) {
            return To::L(l);
        }
        let l = self.label();
        self.rets.insert(v, l);
        To::L(l)
    }
    /// A label for `to` when it is Next (the end of the code about to be written).
    fn fix(&mut self, to: To, ends: &mut Vec<usize>) -> To {
        match to {
            To::Next => {
                let l = self.label();
                ends.push(l);
                To::L(l)
            }
            l => l,
        }
    }

    fn finish(mut self) -> Option<BpfProgram> {
        for (v, l) in std::mem::take(&mut self.rets) {
            self.here(l);
            self.emit(RET_K, To::Next, To::Next, v);
        }
        let n = self.ins.len();
        if n > 4096 {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for (i, &(code, jt, jf, k)) in self.ins.iter().enumerate() {
            let off = |t: To| -> Option<usize> {
                match t {
                    To::Next => Some(0),
                    To::L(l) => self.labels[l]?.checked_sub(i + 1),
                }
            };
            let (jt, jf, k) = if code == JA {
                (0, 0, u32::try_from(off(jt)?).ok()?)
            } else if code & 0x07 == 0x05 {
                (u8::try_from(off(jt)?).ok()?, u8::try_from(off(jf)?).ok()?, k)
            } else {
                (0, 0, k)
            };
            out.push(seccompiler::sock_filter { code, jt, jf, k });
        }
        Some(out)
    }

    /// `t` when any alternative's conditions all hold, else `f`.
    fn alternatives(&mut self, alts: &[&[Cond]], t: To, f: To) {
        let mut ends = Vec::new();
        let (t, f) = (self.fix(t, &mut ends), self.fix(f, &mut ends));
        // "flag bit B is set" alternatives on one argument: one JSET of all their bits
        let mut bits: BTreeMap<u8, u64> = BTreeMap::new();
        let mut rest: Vec<&[Cond]> = Vec::new();
        for alt in alts {
            match alt {
                [c] if c.op == "masked_eq" && c.mask.count_ones() == 1 && c.value & c.mask == c.mask => {
                    *bits.entry(c.index).or_default() |= c.mask;
                }
                _ => rest.push(alt),
            }
        }
        for (&index, &mask) in &bits {
            let lo = 16 + 8 * u32::from(index);
            for (off, m) in [(lo, mask as u32), (lo + 4, (mask >> 32) as u32)] {
                if m != 0 {
                    self.load(off);
                    self.emit(JSET_K, t, To::Next, m);
                }
            }
        }
        for alt in rest {
            let next = self.label();
            for (ci, c) in alt.iter().enumerate() {
                let on_true = if ci + 1 == alt.len() { t } else { To::Next };
                self.cond(c, on_true, To::L(next));
            }
            self.here(next);
        }
        self.jump(f);
        for l in ends {
            self.here(l);
        }
    }

    /// One 64-bit comparison, as seccompiler's Qword conditions: `t` when it holds, else `f`.
    fn cond(&mut self, c: &Cond, t: To, f: To) {
        let mut ends = Vec::new();
        let (t, f) = (self.fix(t, &mut ends), self.fix(f, &mut ends));
        let lo = 16 + 8 * u32::from(c.index);
        let hi = lo + 4;
        let (vh, vl) = ((c.value >> 32) as u32, c.value as u32);
        match c.op.as_str() {
            "eq" => {
                self.load(hi);
                self.emit(JEQ_K, To::Next, f, vh);
                self.load(lo);
                self.emit(JEQ_K, t, f, vl);
            }
            "ne" => {
                self.load(hi);
                self.emit(JEQ_K, To::Next, t, vh);
                self.load(lo);
                self.emit(JEQ_K, f, t, vl);
            }
            "masked_eq" => {
                let v = c.value & c.mask;
                let halves: Vec<(u32, u32, u32)> = [(hi, (c.mask >> 32) as u32, (v >> 32) as u32), (lo, c.mask as u32, v as u32)]
                    .into_iter()
                    .filter(|&(_, m, _)| m != 0) // (a & 0) == 0 always
                    .collect();
                for (i, &(off, m, v)) in halves.iter().enumerate() {
                    self.load(off);
                    if m != u32::MAX {
                        self.emit(ALU_AND_K, To::Next, To::Next, m);
                    }
                    self.emit(JEQ_K, if i + 1 == halves.len() { t } else { To::Next }, f, v);
                }
                if halves.is_empty() {
                    self.jump(t);
                }
            }
            // unsigned: the high words decide unless equal, then the low words
            "gt" | "ge" => {
                self.load(hi);
                self.emit(JGT_K, t, To::Next, vh);
                self.emit(JEQ_K, To::Next, f, vh);
                self.load(lo);
                self.emit(if c.op == "gt" { JGT_K } else { JGE_K }, t, f, vl);
            }
            "lt" | "le" => {
                self.load(hi);
                self.emit(JGT_K, f, To::Next, vh);
                self.emit(JEQ_K, To::Next, t, vh);
                self.load(lo);
                self.emit(if c.op == "lt" { JGE_K } else { JGT_K }, f, t, vl);
            }
            _ => unreachable!("ops are checked by stacked()"),
        }
        for l in ends {
            self.here(l);
        }
    }
}

/// What one filter does with one syscall number.
enum Outcome<'a> {
    Default,
    Matched,
    /// Matched when any alternative's conditions all hold.
    Cond(Vec<&'a [Cond]>),
}

/// One program with the verdicts of `stacked(descs)`, or None when it would not fit
/// (8-bit jumps, 4096 instructions: a long allow-list profile).
pub fn merge(descs: &[FilterDesc]) -> Option<BpfProgram> {
    if descs.is_empty() {
        return None;
    }
    let rets: Vec<(u32, u32)> =
        descs.iter().map(|d| (u32::from(d.default.to_seccompiler()), u32::from(d.matched.to_seccompiler()))).collect();
    // number -> each filter's alternatives, as stacked() reads the descriptions: an
    // alternative without conditions is dropped, a name left without any is unconditional
    let mut alts: BTreeMap<u32, Vec<Vec<&[Cond]>>> = BTreeMap::new();
    for (fi, d) in descs.iter().enumerate() {
        for (name, alternatives) in &d.syscalls {
            let Some(nr) = syscalls::number(name) else { continue };
            let row = alts.entry(nr as u32).or_insert_with(|| vec![Vec::new(); descs.len()]);
            row[fi].extend(alternatives.iter().filter(|a| !a.is_empty()).map(|a| a.as_slice()));
        }
    }
    let named: BTreeMap<u32, Vec<Outcome>> = alts
        .into_iter()
        .map(|(nr, row)| {
            let named_in: Vec<bool> = descs
                .iter()
                .map(|d| d.syscalls.iter().any(|(n, _)| syscalls::number(n) == Some(i64::from(nr))))
                .collect();
            let row = row
                .into_iter()
                .zip(named_in)
                .map(|(a, named)| match (named, a.is_empty()) {
                    (false, _) => Outcome::Default,
                    (true, true) => Outcome::Matched,
                    (true, false) => Outcome::Cond(a),
                })
                .collect();
            (nr, row)
        })
        .collect();
    // with the x32 guard first in the stack, as stacked() loads it (it allows these numbers)
    let verdict = |pick: &dyn Fn(usize) -> u32| {
        let mut v = vec![libc::SECCOMP_RET_ALLOW];
        v.extend((0..descs.len()).map(pick));
        stack_verdict(&v)
    };
    let unnamed = verdict(&|i| rets[i].0);
    let x32 = {
        let mut v = vec![libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32];
        v.extend(rets.iter().map(|r| r.0));
        stack_verdict(&v)
    };

    #[derive(Clone, Copy, PartialEq)]
    enum V {
        Ret(u32),
        Block(u32),
    }
    // runs of equal verdicts over [0, X32_SYSCALL_BIT): (first number, verdict)
    let mut runs: Vec<(u32, V)> = vec![(0, V::Ret(unnamed))];
    let set = |runs: &mut Vec<(u32, V)>, at: u32, v: V| match runs.last_mut() {
        Some(last) if last.0 == at => last.1 = v,
        _ => runs.push((at, v)),
    };
    for (&nr, row) in &named {
        let conditional = row.iter().any(|o| matches!(o, Outcome::Cond(_)));
        let v = if conditional {
            V::Block(nr)
        } else {
            V::Ret(verdict(&|i| if matches!(row[i], Outcome::Matched) { rets[i].1 } else { rets[i].0 }))
        };
        set(&mut runs, nr, v);
        set(&mut runs, nr + 1, V::Ret(unnamed));
    }
    runs.dedup_by(|later, earlier| later.1 == earlier.1);

    let mut a = Asm::default();
    let kill = a.ret(libc::SECCOMP_RET_KILL_PROCESS);
    let x32_ret = a.ret(x32);
    a.load(4); // seccomp_data.arch
    a.emit(JEQ_K, To::Next, kill, AUDIT_ARCH_X86_64);
    a.load(0); // seccomp_data.nr
    a.emit(JGE_K, x32_ret, To::Next, X32_SYSCALL_BIT);
    let mut blocks: BTreeMap<u32, usize> = BTreeMap::new();
    let mut target = |a: &mut Asm, v: V| match v {
        V::Ret(r) => a.ret(r),
        V::Block(nr) => To::L(*blocks.entry(nr).or_insert_with(|| a.label())),
    };
    // The search: `jge first-of-the-right-half`, the left half written next (preorder).
    fn node(a: &mut Asm, runs: &[(u32, V)], target: &mut dyn FnMut(&mut Asm, V) -> To) -> To {
        if let [(_, v)] = runs {
            return target(a, *v);
        }
        let here = a.label();
        a.here(here);
        let mid = runs.len() / 2;
        let at = a.ins.len();
        a.emit(JGE_K, To::Next, To::Next, runs[mid].0);
        let left = node(a, &runs[..mid], target);
        let right = node(a, &runs[mid..], target);
        a.ins[at].1 = right;
        a.ins[at].2 = left; // a subtree's label is the next instruction
        To::L(here)
    }
    let root = node(&mut a, &runs, &mut target);
    if runs.len() == 1 {
        a.jump(root);
    }
    for (nr, l) in blocks {
        a.here(l);
        let row = &named[&nr];
        let mut fixed: Vec<Option<u32>> = row
            .iter()
            .enumerate()
            .map(|(i, o)| match o {
                Outcome::Default => Some(rets[i].0),
                Outcome::Matched => Some(rets[i].1),
                Outcome::Cond(_) => None,
            })
            .collect();
        decide(&mut a, &rets, row, &mut fixed, 0);
    }
    a.finish()
}

/// The code of one number whose verdict depends on arguments: each conditional filter's
/// conditions in turn (both branches go on to the next), ending in the stack's verdict.
fn decide(a: &mut Asm, rets: &[(u32, u32)], row: &[Outcome], fixed: &mut [Option<u32>], from: usize) {
    let Some(i) = (from..row.len()).find(|&i| fixed[i].is_none()) else {
        let mut v = vec![libc::SECCOMP_RET_ALLOW];
        v.extend(fixed.iter().map(|r| r.expect("every filter is decided")));
        let to = a.ret(stack_verdict(&v));
        a.jump(to);
        return;
    };
    let Outcome::Cond(alts) = &row[i] else { unreachable!() };
    let last = !(i + 1..row.len()).any(|j| fixed[j].is_none());
    let branch = |a: &mut Asm, fixed: &mut [Option<u32>], r: u32| -> To {
        fixed[i] = Some(r);
        let mut v = vec![libc::SECCOMP_RET_ALLOW];
        v.extend(fixed.iter().map(|r| r.expect("the filters before and after i are decided")));
        let to = a.ret(stack_verdict(&v));
        fixed[i] = None;
        to
    };
    if last {
        let t = branch(a, fixed, rets[i].1);
        let f = branch(a, fixed, rets[i].0);
        a.alternatives(alts, t, f);
        return;
    }
    let (t, f) = (a.label(), a.label());
    a.alternatives(alts, To::L(t), To::L(f));
    for (l, r) in [(t, rets[i].1), (f, rets[i].0)] {
        a.here(l);
        fixed[i] = Some(r);
        decide(a, rets, row, fixed, i + 1);
        fixed[i] = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(default: Action, matched: Action, names: &[&str]) -> FilterDesc {
        FilterDesc { default, matched, syscalls: names.iter().map(|n| (n.to_string(), vec![])).collect() }
    }

    #[test]
    fn unknown_names_are_skipped_and_reported() {
        let d = [desc(Action::Allow, Action::Errno(1), &["mount", "arm_fadvise64_64"])];
        let p = stacked(&d).unwrap();
        assert_eq!(p.filters.len(), 2, "the x32 guard, then the filter");
        assert_eq!(p.filters[0], x32_guard());
        assert_eq!(p.skipped, vec!["arm_fadvise64_64".to_string()]);
        let p = compile(&d).unwrap();
        assert_eq!(p.filters.len(), 1, "merged");
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

    /// What the kernel answers for a stack of filters (seccomp_run_filters).
    fn run_stack(progs: &[BpfProgram], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let rets: Vec<u32> = progs.iter().map(|p| run(p, nr, arch, args)).collect();
        stack_verdict(&rets)
    }

    fn c(index: u8, op: &str, value: u64, mask: u64) -> Cond {
        Cond { index, op: op.into(), value, mask }
    }

    /// security.py's default profile for the default capabilities: names denied, clone's and
    /// unshare's namespace flags, personality's values, socket's AF_VSOCK, then clone3's ENOSYS.
    fn default_profile() -> Vec<FilterDesc> {
        let denied = [
            "add_key", "keyctl", "request_key", "create_module", "get_kernel_syms", "query_module", "nfsservctl",
            "_sysctl", "sysfs", "uselib", "ustat", "userfaultfd", "afs_syscall", "tuxcall", "security",
            "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load",
            "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie", "mount",
            "mount_setattr", "move_mount", "open_tree", "open_tree_attr", "pivot_root", "quotactl", "quotactl_fd",
            "setdomainname", "sethostname", "setns", "swapon", "swapoff", "umount", "umount2", "vm86", "vm86old",
            "listmount", "statmount", "bpf", "perf_event_open", "syslog", "reboot", "init_module", "finit_module",
            "delete_module", "iopl", "ioperm", "kcmp", "pidfd_getfd", "settimeofday", "stime", "clock_settime",
            "clock_adjtime", "acct", "get_mempolicy", "set_mempolicy", "mbind", "move_pages",
            "set_mempolicy_home_node", "vhangup", "open_by_handle_at", "name_to_handle_at",
        ];
        let mut syscalls: Vec<(String, Vec<Vec<Cond>>)> = denied.iter().map(|n| (n.to_string(), vec![])).collect();
        let bits = |mask: u64| (0..64).filter(move |b| mask >> b & 1 == 1).map(|b| vec![c(0, "masked_eq", 1 << b, 1 << b)]);
        syscalls.push(("clone".into(), bits(0x7E02_0000).collect()));
        syscalls.push(("unshare".into(), bits(0x7E02_0080).collect()));
        let mut pers = vec![c(0, "ne", 0, 0)];
        pers.extend([0x8u64, 0x20000, 0x20008, 0xFFFF_FFFF].map(|v| c(0, "ne", v, 0)));
        syscalls.push(("personality".into(), vec![pers]));
        syscalls.push(("socket".into(), vec![vec![c(0, "eq", 40, 0)]]));
        vec![
            FilterDesc { default: Action::Allow, matched: Action::Errno(1), syscalls },
            desc(Action::Allow, Action::Errno(38), &["clone3"]),
        ]
    }

    /// Argument values around every value the profile compares with (both words), and some noise.
    fn probe_args(descs: &[FilterDesc]) -> Vec<[u64; 6]> {
        let mut vals: Vec<u64> = vec![0, 1, u64::MAX, 0xFFFF_FFFF, 1 << 32, 0x8000_0000_0000_0000];
        for d in descs {
            for (_, alts) in &d.syscalls {
                for cond in alts.iter().flatten() {
                    for v in [cond.value, cond.value & cond.mask, cond.mask, !cond.mask] {
                        vals.extend([v, v.wrapping_sub(1), v.wrapping_add(1), v ^ (1 << 32), v ^ 1, v | 0x10]);
                        vals.extend([v.wrapping_add(1 << 32), v.wrapping_sub(1 << 32)]);
                    }
                }
            }
        }
        vals.sort_unstable();
        vals.dedup();
        let mut out: Vec<[u64; 6]> = Vec::new();
        for &v in &vals {
            for i in 0..3 {
                let mut a = [0u64; 6];
                a[i] = v;
                out.push(a);
            }
            out.push([v; 6]);
        }
        // pairs on the first two arguments, from a small generator
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..300 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (a, b) = (vals[(x % vals.len() as u64) as usize], vals[((x >> 20) % vals.len() as u64) as usize]);
            out.push([a, b, b, a, x, a]);
        }
        out
    }

    /// The merged program gives every verdict the stack of filters gives.
    fn assert_same_verdicts(descs: &[FilterDesc]) -> (usize, usize) {
        let stack = stacked(descs).unwrap().filters;
        let one = merge(descs).expect("merged");
        let args = probe_args(descs);
        let numbers: Vec<u32> = (0..=470).chain([0x4000_0000, 0x4000_0000 | 165, 0x3FFF_FFFF, u32::MAX]).collect();
        for &nr in &numbers {
            for arch in [AUDIT_ARCH_X86_64, 0x4000_0003, 0xC000_00B7] {
                // the argument probes only where they can matter
                let arg_sets: &[[u64; 6]] = if nr < 470 && arch == AUDIT_ARCH_X86_64 { &args } else { &args[..4] };
                for a in arg_sets {
                    assert_eq!(
                        run(&one, nr, arch, *a),
                        run_stack(&stack, nr, arch, *a),
                        "nr {nr} arch {arch:#x} args {a:x?}"
                    );
                }
            }
        }
        (one.len(), stack.iter().map(|f| f.len()).sum())
    }

    #[test]
    fn the_default_profile_merges_into_one_shorter_filter_with_the_same_verdicts() {
        let (one, stack) = assert_same_verdicts(&default_profile());
        assert!(one * 2 < stack, "merged {one} instructions, stacked {stack}");
        // with CAP_SYS_ADMIN: no clone or unshare conditions, no clone3 filter
        let mut admin = default_profile();
        admin.truncate(1);
        admin[0].syscalls.retain(|(n, _)| n != "clone" && n != "unshare");
        assert_same_verdicts(&admin);
    }

    #[test]
    fn an_allow_list_with_other_actions_merges_with_the_same_verdicts() {
        // as security.compile_profile turns a docker profile into filters: the allow list
        // (everything with another action listed too), then one filter per other action
        let mut allow: Vec<(String, Vec<Vec<Cond>>)> =
            syscalls::X86_64.iter().take(300).map(|(n, _)| (n.to_string(), vec![])).collect();
        allow.retain(|(n, _)| n != "personality" && n != "socket");
        allow.push(("personality".into(), vec![vec![c(0, "eq", 8, 0)], vec![c(0, "eq", 0, 0)]]));
        allow.push(("socket".into(), vec![vec![c(0, "ne", 40, 0), c(1, "le", 5, 0)], vec![c(0, "gt", 1 << 33, 0)]]));
        let descs = vec![
            FilterDesc { default: Action::Errno(1), matched: Action::Allow, syscalls: allow },
            desc(Action::Allow, Action::Errno(38), &["clone3", "read"]),
            desc(Action::Allow, Action::KillProcess, &["kexec_load"]),
            desc(Action::Allow, Action::Trap, &["ptrace", "read"]),
            desc(Action::Allow, Action::Log, &["uname"]),
            FilterDesc {
                default: Action::Allow,
                matched: Action::KillThread,
                syscalls: vec![("write".into(), vec![vec![c(2, "ge", 0x1_0000_0000, 0)], vec![c(3, "lt", 7, 0)]])],
            },
        ];
        assert_same_verdicts(&descs);
    }

    #[test]
    fn a_number_with_conditions_in_two_filters_merges_with_the_same_verdicts() {
        let descs = vec![
            FilterDesc {
                default: Action::Allow,
                matched: Action::Errno(1),
                syscalls: vec![
                    ("clone".into(), vec![vec![c(0, "masked_eq", 0x10, 0x30)], vec![c(1, "masked_eq", 1 << 40, 1 << 40)]]),
                    ("ioctl".into(), vec![vec![c(1, "eq", 0x5401, 0), c(2, "ne", 0, 0)]]),
                ],
            },
            FilterDesc {
                default: Action::Allow,
                matched: Action::Errno(13),
                syscalls: vec![
                    ("clone".into(), vec![vec![c(0, "masked_eq", 1 << 35, 1 << 35)], vec![c(0, "le", 0x100, 0)]]),
                    ("ioctl".into(), vec![]),
                    ("mount".into(), vec![vec![]]),
                ],
            },
            FilterDesc {
                default: Action::Errno(22),
                matched: Action::Allow,
                syscalls: vec![("clone".into(), vec![vec![c(5, "ge", 3, 0)]]), ("ioctl".into(), vec![]), ("read".into(), vec![])],
            },
        ];
        assert_same_verdicts(&descs);
    }

    #[test]
    fn a_profile_too_long_for_one_program_stays_a_stack() {
        // every number with its own conditions: the blocks push the search's jumps past 255
        let descs = vec![FilterDesc {
            default: Action::Allow,
            matched: Action::Errno(1),
            syscalls: syscalls::X86_64.iter().take(200).map(|(n, _)| (n.to_string(), vec![vec![c(0, "eq", 1, 0)]])).collect(),
        }];
        assert!(merge(&descs).is_none());
        assert_eq!(compile(&descs).unwrap().filters.len(), 2);
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
            let ours = stacked(std::slice::from_ref(&d)).unwrap().filters.pop().unwrap();
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
        let p = stacked(&[desc(Action::Errno(1), Action::Allow, &plain)]).unwrap();
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
        assert!(!stacked(std::slice::from_ref(&d)).unwrap().filters[1].is_empty());
        let mut bad = d;
        bad.syscalls[0].1[0][0].op = "like".into();
        assert!(compile(&[bad]).is_err());
    }
}
