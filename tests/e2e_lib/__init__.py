"""The Python end-to-end suites' shared library (Python standard library only).

- `ports`: `free_port()` for a child that must be told its port, and `listening_socket()`
  for a server in this process;
- `wait`: `wait_for(pred, timeout, what)`, a condition with a deadline (never a bare sleep);
- `procs`: `Stack`, the processes of one scenario in one temporary folder (spawn, port-0
  addresses read from their logs, kill, stop, cleanup however the scenario ends);
- `runner`: `main(tests, suite)` / `run_tests`: name filters, one line a test, `N passed,
  M failed`, a filter matching nothing is an error (exit 5);
- `envoy`: Envoy's side: `envoy_config` from envoy/envoy.yaml, `EnvoyStack` (upstream +
  collector + Envoy with the filter), `settled`, `check_batches`, `assert_no_replays`.

A suite puts the repository's `tests/` folder on sys.path and imports `e2e_lib`:

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from e2e_lib import runner, wait_for
"""
from .ports import free_port, listening_socket  # noqa: F401
from .procs import ROOT, BIN, Stack  # noqa: F401
from .wait import wait_for  # noqa: F401
