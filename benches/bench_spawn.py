"""One container running /bin/true from the busybox rootfs, with mount, pid, uts, ipc,
net and cgroup namespaces, through each runner of benches/conftest.py: the floor
program, fastcontain, crun, runc, bubblewrap, and subprocess without namespaces."""


def test_spawn_true(benchmark, runner):
    benchmark.group = "spawn /bin/true"
    benchmark.extra_info.update(runner.check())  # isolated as claimed, once
    benchmark(runner.run)  # every timed run asserts exit status 0
