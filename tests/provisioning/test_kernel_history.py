"""The kernel history's sentences and records, from the shapes Docker and Popen give."""

from __future__ import annotations

import json

from jupyter_gpuenv.kernel.previous_exit import previous_exit_sentence, read_previous_exit
from jupyter_gpuenv.provisioning import kernel_history as kh


def test_oom_kill_names_the_limit_as_configured() -> None:
    state = {"Running": False, "ExitCode": 137, "OOMKilled": True}
    exit_ = kh.container_exit(state, 300 * 2**20, "a\n\nb\n", requested=True)
    assert exit_.reason == "killed: out of memory (limit 300 MiB, mem_limit)"
    assert exit_.oom_killed and exit_.signal == "SIGKILL" and exit_.code == 137
    assert exit_.requested is False  # an OOM kill is never the server's doing
    assert exit_.log_tail == ["a", "b"]


def test_other_endings() -> None:
    killed = kh.container_exit({"ExitCode": 143, "OOMKilled": False}, None, "", requested=False)
    assert killed.reason == "killed by SIGTERM" and killed.signal == "SIGTERM"
    crashed = kh.container_exit({"ExitCode": 1}, None, "", requested=False)
    assert crashed.reason == "the kernel process exited with code 1" and crashed.signal is None
    stopped = kh.container_exit({"ExitCode": 0}, None, "", requested=True)
    assert stopped.reason == "stopped by the server (shutdown or restart)"
    assert "disappeared" in kh.vanished_exit().reason
    local = kh.process_exit(-9, requested=False)
    assert local.signal == "SIGKILL" and "possibly the out-of-memory killer" in local.reason
    assert kh.human_limit(int(1.5 * 2**30)) == "1.5 GiB" and kh.human_limit(None) is None


def test_the_next_process_is_told_and_the_record_is_forgotten() -> None:
    kernel_id = "test-kernel-history-0001"
    history = kh.history_of(kernel_id)
    assert kh.previous_exit_environment(kernel_id) == {}
    history.starts = 2
    history.last_exit = kh.container_exit({"ExitCode": 137, "OOMKilled": True}, 2**30, "", False)
    environ = kh.previous_exit_environment(kernel_id)
    data = read_previous_exit(environ)
    assert data is not None and data["restart_count"] == 1
    assert json.loads(environ[kh.PREVIOUS_EXIT_ENV])["oom_killed"] is True
    sentence = previous_exit_sentence(data)
    assert sentence is not None
    assert sentence.startswith("Previous kernel process (restart 1, ended ")
    assert sentence.endswith(": killed: out of memory (limit 1 GiB, mem_limit)")
    kh.forget(kernel_id)
    assert kh.known_history(kernel_id) is None
    assert read_previous_exit({kh.PREVIOUS_EXIT_ENV: "not json"}) is None
