"""Running a stage as the ``urbanvis`` command (torch stages when QGIS's Python has none).

The command is the plugin setting ``urbanvis/executable`` (QgsSettings), else the
``URBANVIS_EXE`` environment variable, else ``urbanvis`` found on PATH. Its tqdm progress
(``12/100``) drives the feedback's progress bar, its log lines go to the log, cancelling
kills it (the stages keep what they finished: a rerun resumes), and its one-line
``error: ...`` message becomes the algorithm's error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from qgis.core import QgsProcessingException, QgsSettings

SETTING_EXE = "urbanvis/executable"
_PROGRESS = re.compile(r"(\d+)/(\d+)\s*\[")


def executable() -> str:
    """The urbanvis command this plugin runs, or an error that says how to set it."""
    exe = QgsSettings().value(SETTING_EXE, "") or os.environ.get("URBANVIS_EXE", "")
    if not exe:
        from . import venv_path

        venv = venv_path()
        candidate = os.path.join(venv, "bin", "urbanvis") if venv else ""
        exe = candidate if candidate and os.path.isfile(candidate) else ""
    exe = exe or shutil.which("urbanvis") or ""
    if not exe or not os.path.isfile(exe):
        raise QgsProcessingException(
            "the urbanvis command was not found; install urbanvis[engine] in a venv and set "
            f"its bin/urbanvis in QGIS (Settings > Options > Processing > Providers > urbanvis, "
            f"or QgsSettings().setValue('{SETTING_EXE}', PATH))"
        )
    return exe


def command_line(stage: str, study: str, keywords: dict[str, Any]) -> list[str]:
    """``urbanvis STAGE --study STUDY --kw value...`` for a stage call's keywords."""
    from urbanvis_cli._options import flag_name

    args = [executable(), stage, "--study", study]
    for key, value in keywords.items():
        if value is None or value is False:
            continue
        flag = flag_name(key)
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


def run_command(
    stage: str, study: str, keywords: dict[str, Any], feedback, *, label_of: Callable[[str], str]
) -> str:
    """Run the stage as the urbanvis command; returns its summary (stdout)."""
    args = command_line(stage, study, keywords)
    feedback.pushCommandInfo(" ".join(args))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0
    )
    stdout: list[bytes] = []
    errors: list[str] = []
    out_thread = threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)
    out_thread.start()
    buffer = b""
    cancelled = False

    def watch() -> None:  # kill the command as soon as the user cancels
        nonlocal cancelled
        while proc.poll() is None:
            if feedback.isCanceled():
                cancelled = True
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                return
            threading.Event().wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    while True:
        chunk = proc.stderr.read(256)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = re.split(rb"[\r\n]", buffer)
        for raw in lines:
            _line(raw.decode(errors="replace").strip(), feedback, errors)
    _line(buffer.decode(errors="replace").strip(), feedback, errors)
    proc.wait()
    watcher.join(1)
    out_thread.join(5)
    text = b"".join(stdout).decode(errors="replace").strip()
    if cancelled:
        feedback.reportError("stopped; what was finished is kept and a rerun continues")
        return text or "stopped"
    if proc.returncode != 0:
        message = errors[-1] if errors else f"urbanvis {stage} failed (exit {proc.returncode})"
        raise QgsProcessingException(_worded(message, label_of))
    return text


def _worded(message: str, label_of: Callable[[str], str]) -> str:
    """The command's message with its --flags named by the algorithm's labels."""
    return re.sub(r"--([a-z][a-z0-9-]*)", lambda m: label_of(m.group(1).replace("-", "_")), message)


def _line(line: str, feedback, errors: list[str]) -> None:
    if not line:
        return
    found = _PROGRESS.search(line)
    if found:
        done, total = int(found.group(1)), int(found.group(2))
        if total:
            feedback.setProgress(100.0 * done / total)
        return
    if line.startswith("error:"):
        errors.append(line[len("error:") :].strip())
        return
    feedback.pushInfo(line)
