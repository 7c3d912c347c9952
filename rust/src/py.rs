//! The Python edge: the only pyo3 code in the crate.
//!
//! One typed value crosses the boundary (the spec dict, see `_native.pyi`);
//! long calls release the GIL through `py.detach`; every Rust error becomes
//! a `fastcontain.errors` exception in exactly one place, [`to_py`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::{Error, SpecError, Step};
use crate::plan;
use crate::{caps, seccomp, sys};
use crate::spawn as core;
use crate::spec::{Interface, MountSpec, Overlay, Spec, Userns};

/// Convert a Rust error into the exception the Python layer defines.
fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let errors = py.import("fastcontain.errors")?;
        Ok(match err {
            Error::Spec(e) => {
                PyErr::from_value(errors.getattr("ConfigError")?.call1((e.field, e.value, e.reason))?)
            }
            Error::Spawn(e) => {
                let kwargs = PyDict::new(py);
                kwargs.set_item("step", e.step.name())?;
                kwargs.set_item("errno", e.errno)?;
                kwargs.set_item("path", e.path)?;
                PyErr::from_value(errors.getattr("SpawnError")?.call((e.message,), Some(&kwargs))?)
            }
        })
    })();
    made.unwrap_or_else(|e| e)
}

fn os_error(py: Python<'_>, errno: i32, what: &str) -> PyErr {
    let _ = py;
    PyOSError::new_err((errno, format!("{what}: {}", std::io::Error::from_raw_os_error(errno))))
}

type Fields<'py> = HashMap<String, Bound<'py, PyAny>>;

fn bad(field: &str, value: &Bound<'_, PyAny>, reason: &str) -> Error {
    let shown = value.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into());
    Error::Spec(SpecError::new(field, shown, reason))
}

/// Take `key` out of the spec as a `T`, or `default` when absent or None.
fn take<'py, T>(f: &mut Fields<'py>, key: &str, what: &str, default: impl FnOnce() -> T) -> Result<T, Error>
where
    T: for<'a> FromPyObject<'a, 'py>,
{
    match f.remove(key) {
        None => Ok(default()),
        Some(v) if v.is_none() => Ok(default()),
        Some(v) => v.extract::<T>().map_err(|_| bad(key, &v, &format!("expected {what}"))),
    }
}

fn required<'py, T>(f: &mut Fields<'py>, key: &str, what: &str) -> Result<T, Error>
where
    T: for<'a> FromPyObject<'a, 'py>,
{
    match f.get(key) {
        Some(v) if !v.is_none() => take(f, key, what, || unreachable!()),
        _ => Err(Error::Spec(SpecError::new(key, "None", format!("required ({what})")))),
    }
}

fn fields<'py>(obj: &Bound<'py, PyAny>, name: &str) -> Result<Fields<'py>, Error> {
    obj.extract::<Fields<'py>>()
        .map_err(|_| bad(name, obj, "expected a dict with string keys"))
}

fn no_more(f: Fields<'_>, name: &str) -> Result<(), Error> {
    match f.into_iter().next() {
        Some((k, v)) => Err(bad(&format!("{name}{k}"), &v, "unknown spec key")),
        None => Ok(()),
    }
}

fn extract_spec(obj: &Bound<'_, PyAny>) -> Result<Spec, Error> {
    let mut f = fields(obj, "spec")?;
    let d = Spec::default();
    let overlay = match f.remove("overlay") {
        Some(o) if !o.is_none() => {
            let mut of = fields(&o, "overlay")?;
            let ov = Overlay {
                lower: required(&mut of, "lower", "a list of directories")?,
                upper: required(&mut of, "upper", "a directory")?,
                work: required(&mut of, "work", "a directory")?,
            };
            no_more(of, "overlay.")?;
            Some(ov)
        }
        _ => None,
    };
    let userns = match f.remove("userns") {
        Some(u) if !u.is_none() => {
            let mut uf = fields(&u, "userns")?;
            let un = Userns {
                uid_map: required(&mut uf, "uid_map", "a list of (inside, outside, count)")?,
                gid_map: required(&mut uf, "gid_map", "a list of (inside, outside, count)")?,
                own: take(&mut uf, "own", "a list of host paths", Vec::new)?,
                traverse: take(&mut uf, "traverse", "a list of host directories", Vec::new)?,
                overlay_by: take(&mut uf, "overlay_by", "'parent-idmap', 'parent' or 'child'", String::new)?,
                setgroups_deny: take(&mut uf, "setgroups_deny", "a bool", || false)?,
                map_helpers: take(&mut uf, "map_helpers", "[newuidmap, newgidmap] or []", Vec::new)?,
            };
            no_more(uf, "userns.")?;
            Some(un)
        }
        _ => None,
    };
    let raw_mounts: Vec<Bound<'_, PyAny>> = take(&mut f, "mounts", "a list of dicts", Vec::new)?;
    let mut mounts = Vec::with_capacity(raw_mounts.len());
    for (i, m) in raw_mounts.iter().enumerate() {
        let name = format!("mounts[{i}]");
        let mut mf = fields(m, &name)?;
        mounts.push(MountSpec {
            source: take(&mut mf, "source", "a string", || "none".to_string())?,
            target: required(&mut mf, "target", "an absolute path")?,
            fstype: take(&mut mf, "type", "a string", || "bind".to_string())?,
            options: take(&mut mf, "options", "a list of strings", Vec::new)?,
        });
        no_more(mf, &format!("{name}."))?;
    }
    let spec = Spec {
        argv: required(&mut f, "argv", "a list of strings")?,
        env: take(&mut f, "env", "a list of KEY=VALUE strings", Vec::new)?,
        cwd: take(&mut f, "cwd", "a string", || d.cwd.clone())?,
        rootfs: required(&mut f, "rootfs", "an absolute directory")?,
        overlay,
        readonly_rootfs: take(&mut f, "readonly_rootfs", "a bool", || false)?,
        namespaces: take(&mut f, "namespaces", "a list of strings", || d.namespaces.clone())?,
        hostname: take(&mut f, "hostname", "a string", || None)?,
        default_mounts: take(&mut f, "default_mounts", "a bool", || true)?,
        sysfs_rw: take(&mut f, "sysfs_rw", "a bool", || false)?,
        device_nodes: take(&mut f, "device_nodes", "a list of (path, mode, major, minor, uid, gid)", Vec::new)?,
        mounts,
        uid: take(&mut f, "uid", "an int", || 0)?,
        gid: take(&mut f, "gid", "an int", || 0)?,
        groups: take(&mut f, "groups", "a list of ints", Vec::new)?,
        umask: take(&mut f, "umask", "an int", || d.umask)?,
        stdio: take(&mut f, "stdio", "three ints", || d.stdio)?,
        cpus: take(&mut f, "cpus", "a list of ints", || None)?,
        cgroup_fd: take(&mut f, "cgroup_fd", "an int", || None)?,
        netns_fd: take(&mut f, "netns_fd", "an int", || None)?,
        cgroup_procs_fds: take(&mut f, "cgroup_procs_fds", "a list of ints", Vec::new)?,
        wait_for_start: take(&mut f, "wait_for_start", "a bool", || false)?,
        hold_mount_ns: take(&mut f, "hold_mount_ns", "a bool", || false)?,
        pause_before_pivot: take(&mut f, "pause_before_pivot", "a bool", || false)?,
        capabilities: take(&mut f, "capabilities", "a list of capability names", || None)?,
        no_new_privileges: take(&mut f, "no_new_privileges", "a bool", || false)?,
        seccomp: match f.remove("seccomp") {
            Some(s) if !s.is_none() => Some(
                s.cast::<PySeccomp>()
                    .map_err(|_| bad("seccomp", &s, "expected a program from compile_seccomp()"))?
                    .get()
                    .program
                    .clone(),
            ),
            _ => None,
        },
        masked_paths: take(&mut f, "masked_paths", "a list of paths", Vec::new)?,
        readonly_paths: take(&mut f, "readonly_paths", "a list of paths", Vec::new)?,
        rlimits: take(&mut f, "rlimits", "a list of (name, soft, hard)", Vec::new)?,
        oom_score_adj: take(&mut f, "oom_score_adj", "an int", || None)?,
        userns,
        interface: match f.remove("interface") {
            Some(o) if !o.is_none() => {
                let mut i = fields(&o, "interface")?;
                let iface = Interface {
                    name: required(&mut i, "name", "an interface name")?,
                    address: required(&mut i, "address", "a dotted IPv4 address")?,
                    prefix: required(&mut i, "prefix", "a prefix length")?,
                    gateway: take(&mut i, "gateway", "a dotted IPv4 address", || None)?,
                };
                no_more(i, "interface.")?;
                Some(iface)
            }
            _ => None,
        },
        init: take(&mut f, "init", "a bool", || false)?,
        tty: take(&mut f, "tty", "a bool", || false)?,
        join: take(&mut f, "join", "a pidfd", || None)?,
    };
    no_more(f, "")?;
    Ok(spec)
}

/// A container's init process (see `_native.pyi`).
#[pyclass(frozen, name = "Child", module = "fastcontain._native")]
struct PyChild {
    inner: core::Child,
}

#[pymethods]
impl PyChild {
    #[getter]
    fn pid(&self) -> i32 {
        self.inner.pid()
    }

    #[getter]
    fn pidfd(&self) -> i32 {
        self.inner.pidfd()
    }

    #[getter]
    fn clone_method(&self) -> &'static str {
        self.inner.method().name()
    }

    #[getter]
    fn returncode(&self) -> Option<i32> {
        self.inner.returncode()
    }

    /// {"utime", "stime"} (seconds) and "maxrss" (bytes) from waitid's rusage, once reaped.
    #[getter]
    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(u) = self.inner.usage() else { return Ok(None) };
        let d = PyDict::new(py);
        d.set_item("utime", u.utime_us as f64 / 1e6)?;
        d.set_item("stime", u.stime_us as f64 / 1e6)?;
        d.set_item("maxrss", u.maxrss_kib * 1024)?;
        Ok(Some(d))
    }

    #[getter]
    fn started(&self) -> bool {
        self.inner.started()
    }

    #[getter]
    fn timings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let t = self.inner.timings();
        let d = PyDict::new(py);
        d.set_item("plan", t.plan)?;
        d.set_item("clone", t.clone)?;
        d.set_item("setup", t.setup)?;
        d.set_item("start", t.start)?;
        if let Some((steps, exec)) = t.child {
            for (name, ns) in crate::timing::NAMES.iter().zip(steps) {
                d.set_item(format!("child_{name}"), ns)?;
            }
            d.set_item("child_exec", exec)?;
        }
        Ok(d)
    }

    fn resume_setup(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.resume_setup()).map_err(|e| to_py(py, Error::Spawn(e)))
    }

    #[getter]
    fn paused_before_pivot(&self) -> bool {
        self.inner.paused_before_pivot()
    }

    fn start(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.start()).map_err(|e| to_py(py, Error::Spawn(e)))
    }

    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<i32>> {
        let deadline = match timeout {
            Some(t) if !(t >= 0.0 && t.is_finite()) => {
                return Err(to_py(py, Error::Spec(SpecError::new("timeout", t.to_string(), "must be >= 0"))));
            }
            Some(t) => Some(Instant::now() + Duration::from_secs_f64(t)),
            None => None,
        };
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match py.detach(|| self.inner.wait(left)) {
                Ok(rc) => return Ok(rc),
                // a signal: let Python run its handlers (KeyboardInterrupt), then go on waiting
                Err(libc::EINTR) => py.check_signals()?,
                Err(e) => return Err(os_error(py, e, "waiting for the container's init")),
            }
        }
    }

    fn poll(&self, py: Python<'_>) -> PyResult<Option<i32>> {
        self.inner.poll().map_err(|e| os_error(py, e, "waitid on the container's pidfd"))
    }

    fn send_signal(&self, py: Python<'_>, sig: i32) -> PyResult<()> {
        self.inner
            .send_signal(sig)
            .map_err(|e| os_error(py, e, &format!("pidfd_send_signal({sig}) to the container's init")))
    }

    fn close(&self, py: Python<'_>) {
        py.detach(|| self.inner.close())
    }

    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.inner.release().map_err(|e| to_py(py, Error::Spawn(e)))
    }

    fn __repr__(&self) -> String {
        format!(
            "<Child pid={} method={} returncode={:?}>",
            self.inner.pid(),
            self.inner.method().name(),
            self.inner.returncode()
        )
    }
}

#[pyfunction]
fn spawn(py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<PyChild> {
    let t = Instant::now();
    let spec = extract_spec(spec).map_err(|e| to_py(py, e))?;
    let result = py.detach(move || -> Result<core::Child, Error> {
        let (plan, describe) = plan::build(&spec)?;
        let plan_ns = t.elapsed().as_nanos() as u64;
        Ok(core::spawn(plan, describe, plan_ns)?)
    });
    result.map(|inner| PyChild { inner }).map_err(|e| to_py(py, e))
}

/// A compiled seccomp profile, shared by every container that uses it.
#[pyclass(frozen, name = "SeccompProgram", module = "fastcontain._native")]
struct PySeccomp {
    program: Arc<seccomp::Program>,
}

#[pymethods]
impl PySeccomp {
    /// Syscall names of the profile that x86_64 does not have (ignored).
    #[getter]
    fn skipped(&self) -> Vec<String> {
        self.program.skipped.clone()
    }

    /// BPF instructions per filter.
    #[getter]
    fn sizes(&self) -> Vec<usize> {
        self.program.filters.iter().map(|f| f.len()).collect()
    }

    /// Each filter as the kernel reads it (an array of struct sock_filter, native
    /// byte order), in loading order: for benches/floor.c to load the same filters.
    fn bpf(&self) -> Vec<Vec<u8>> {
        let ins = |i: &seccompiler::sock_filter| {
            let mut b = Vec::with_capacity(8);
            b.extend_from_slice(&i.code.to_ne_bytes());
            b.extend_from_slice(&[i.jt, i.jf]);
            b.extend_from_slice(&i.k.to_ne_bytes());
            b
        };
        self.program.filters.iter().map(|f| f.iter().flat_map(ins).collect()).collect()
    }
}

type PyRule = Vec<(u8, String, u64, u64)>;
type PyFilter = (String, u32, String, u32, HashMap<String, Vec<PyRule>>);

/// filters: [(default_action, default_errno, matched_action, matched_errno, {syscall: [rule, ...]})],
/// a rule being a list of (arg index, op, value, mask) that must all hold.
#[pyfunction]
fn compile_seccomp(py: Python<'_>, filters: Vec<PyFilter>) -> PyResult<PySeccomp> {
    let mut descs = Vec::with_capacity(filters.len());
    for (i, (dflt, derr, matched, merr, calls)) in filters.into_iter().enumerate() {
        let field = format!("seccomp[{i}]");
        let mut syscalls: Vec<(String, Vec<Vec<seccomp::Cond>>)> = calls
            .into_iter()
            .map(|(name, rules)| {
                let rules = rules
                    .into_iter()
                    .map(|r| r.into_iter().map(|(index, op, value, mask)| seccomp::Cond { index, op, value, mask }).collect())
                    .collect();
                (name, rules)
            })
            .collect();
        syscalls.sort_by(|a, b| a.0.cmp(&b.0));
        descs.push(seccomp::FilterDesc {
            default: seccomp::Action::parse(&field, &dflt, derr).map_err(|e| to_py(py, e.into()))?,
            matched: seccomp::Action::parse(&field, &matched, merr).map_err(|e| to_py(py, e.into()))?,
            syscalls,
        });
    }
    let program = py.detach(|| seccomp::compile(&descs)).map_err(|e| to_py(py, e.into()))?;
    Ok(PySeccomp { program: Arc::new(program) })
}

#[pyfunction]
fn plan_mounts(py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Vec<plan::MountRow>> {
    let spec = extract_spec(spec).map_err(|e| to_py(py, e))?;
    plan::mount_table(&spec).map_err(|e| to_py(py, Error::Spec(e)))
}

/// state.py's removal of a state dir of the usual shape, with the GIL released (the
/// teardown worker's many short syscalls otherwise take the GIL from the threads
/// starting containers, once each).
/// Block (without the GIL) until every mount namespace held by a closed Child is closed:
/// before removing a state folder its overlay was mounted on.
#[pyfunction]
fn wait_mount_ns_closed(py: Python<'_>) {
    py.detach(core::mount_ns::wait_closed)
}

#[pyfunction]
fn remove_entries(py: Python<'_>, dir: std::path::PathBuf, entries: Vec<(String, bool)>) -> PyResult<bool> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |b: &[u8]| std::ffi::CString::new(b).map_err(|_| PyValueError::new_err("a path with a NUL byte"));
    let d = cstr(dir.as_os_str().as_bytes())?;
    let es = entries.iter().map(|(rel, is_dir)| Ok((cstr(rel.as_bytes())?, *is_dir))).collect::<PyResult<Vec<_>>>()?;
    py.detach(|| sys::remove_entries(&d, &es)).map_err(|e| os_error(py, e, &format!("removing {}", dir.display())))
}

/// A container's state folder, locked, with its subfolders (statedir::make): the lock's
/// descriptor, and None or the (errno, path) of a subfolder that failed (the folder is
/// then the caller's to remove). Raises OSError (errno, message, path) before the lock is
/// held. GIL released.
#[pyfunction]
fn make_state_dir(
    py: Python<'_>, root_lock: String, dir: String, lock: String, subdirs: Vec<(String, u32)>,
) -> PyResult<(i32, Option<(i32, String)>)> {
    let cstr = |s: &str| std::ffi::CString::new(s).map_err(|_| PyValueError::new_err("a path with a NUL byte"));
    let (rl, d, l) = (cstr(&root_lock)?, cstr(&dir)?, cstr(&lock)?);
    let subs = subdirs.iter().map(|(p, m)| Ok((cstr(p)?, *m as libc::mode_t))).collect::<PyResult<Vec<_>>>()?;
    let failed_path = |f: &crate::statedir::Failed| f.path.to_string_lossy().into_owned();
    match py.detach(|| crate::statedir::make(&rl, &d, &l, &subs)) {
        Ok((fd, failed)) => Ok((fd, failed.map(|f| (f.errno, failed_path(&f))))),
        Err(f) => {
            let msg = std::io::Error::from_raw_os_error(f.errno).to_string();
            let msg = msg.split(" (os error").next().unwrap_or(&msg).to_string();
            Err(PyOSError::new_err((f.errno, msg, failed_path(&f))))
        }
    }
}

/// A container's cgroup v2 directory (cgroupdir::make): mkdir, the owner xattr (name,
/// value) when given, its O_DIRECTORY descriptor and the device program `prog` attached
/// (negative: none). (fd, None), or (-1, (part, errno)) with nothing left, part being
/// "mkdir", "open" or "attach". GIL released.
#[pyfunction]
#[pyo3(signature = (dir, owner, prog))]
fn make_cgroup_dir(
    py: Python<'_>, dir: String, owner: Option<(String, Vec<u8>)>, prog: i32,
) -> PyResult<(i32, Option<(&'static str, i32)>)> {
    use crate::cgroupdir::Part;
    let cstr = |s: &str| std::ffi::CString::new(s).map_err(|_| PyValueError::new_err("a path with a NUL byte"));
    let d = cstr(&dir)?;
    let owner = match owner {
        Some((name, value)) => Some((cstr(&name)?, value)),
        None => None,
    };
    let r = py.detach(|| crate::cgroupdir::make(&d, owner.as_ref().map(|(n, v)| (n.as_c_str(), v.as_slice())), prog));
    Ok(match r {
        Ok(fd) => (fd, None),
        Err((part, errno)) => {
            let name = match part {
                Part::Mkdir => "mkdir",
                Part::Open => "open",
                Part::Attach => "attach",
            };
            (-1, Some((name, errno)))
        }
    })
}

/// What the network namespace `fd` holds (netpeek::peek, on the native peek thread):
/// (dev, sockstat, sockstat6, lo's flags); sockstat6 is empty without IPv6. Raises
/// OSError naming the step that failed. GIL released.
#[pyfunction]
fn netns_peek(py: Python<'_>, fd: i32) -> PyResult<(Py<PyBytes>, Py<PyBytes>, Py<PyBytes>, i32)> {
    match py.detach(|| crate::netpeek::peek(fd)) {
        Ok((dev, sockstat, sockstat6, flags)) => Ok((
            PyBytes::new(py, &dev).unbind(),
            PyBytes::new(py, &sockstat).unbind(),
            PyBytes::new(py, &sockstat6).unbind(),
            flags,
        )),
        Err((what, errno)) => Err(os_error(py, errno, &format!("reading the network namespace {fd} ({what})"))),
    }
}

/// Whether image layers in `dir`'s filesystem can be idmapped and stacked by an overlay
/// (idmap::probe): None, or raises SpawnError naming the syscall and errno that refused.
#[pyfunction]
fn probe_idmap(py: Python<'_>, dir: String, uid_map: String, gid_map: String) -> PyResult<()> {
    let c = std::ffi::CString::new(dir.clone()).map_err(|_| to_py(py, Error::Spec(SpecError::new("dir", dir, "contains a NUL byte"))))?;
    py.detach(|| crate::idmap::probe(&c, uid_map.as_bytes(), gid_map.as_bytes())).map_err(|e| to_py(py, Error::Spawn(e)))
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(spawn, m)?)?;
    m.add_function(wrap_pyfunction!(plan_mounts, m)?)?;
    m.add_class::<PyChild>()?;
    m.add_class::<PySeccomp>()?;
    m.add_function(wrap_pyfunction!(compile_seccomp, m)?)?;
    m.add_function(wrap_pyfunction!(remove_entries, m)?)?;
    m.add_function(wrap_pyfunction!(make_state_dir, m)?)?;
    m.add_function(wrap_pyfunction!(make_cgroup_dir, m)?)?;
    m.add_function(wrap_pyfunction!(netns_peek, m)?)?;
    m.add_function(wrap_pyfunction!(wait_mount_ns_closed, m)?)?;
    m.add_function(wrap_pyfunction!(probe_idmap, m)?)?;
    m.add("CAPABILITIES", caps::CAPS.to_vec())?;
    let steps: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
    m.add("STEPS", steps)?;
    Ok(())
}
