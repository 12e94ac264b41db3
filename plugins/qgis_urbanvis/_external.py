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


def cli_command(command: str):
    """The click command of ``urbanvis COMMAND`` (``"embed"``, ``"eval vpr"``)."""
    from urbanvis_cli.main import cli

    found = cli
    for word in command.split():
        found = found.commands[word]
    return found


def _joined(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def command_line(command: str, study: str | None, keywords: dict[str, Any]) -> list[str]:
    """``urbanvis COMMAND [--study STUDY] --kw value...`` for a stage call's keywords.

    A list goes to a repeatable option as one flag per item (``--checkpoint A
    --checkpoint B``; a tuple item as ``ROW,COL``), to any other option comma-separated.
    """
    from urbanvis_cli._options import flag_name

    repeatable = {p.name for p in cli_command(command).params if getattr(p, "multiple", False)}
    args = [executable(), *command.split()]
    if study:
        args += ["--study", study]
    for key, value in keywords.items():
        if value is None or value is False or (isinstance(value, (list, tuple)) and not value):
            continue
        flag = flag_name(key)
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)) and key in repeatable:
            for item in value:
                args += [flag, _joined(item)]
        else:
            args += [flag, _joined(value)]
    return args


def run_command(
    command: str,
    study: str | None,
    keywords: dict[str, Any],
    feedback,
    *,
    label_of: Callable[[str], str],
) -> str:
    """Run ``urbanvis COMMAND`` for a stage call; returns its summary (stdout)."""
    args = command_line(command, study, keywords)
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
    proc.stdout.close()
    proc.stderr.close()
    text = b"".join(stdout).decode(errors="replace").strip()
    if cancelled:
        feedback.reportError("stopped; what was finished is kept and a rerun continues")
        return text or "stopped"
    if proc.returncode != 0:
        message = errors[-1] if errors else f"urbanvis {command} failed (exit {proc.returncode})"
        raise QgsProcessingException(worded(message, label_of))
    return text


def worded(message: str, label_of: Callable[[str], str]) -> str:
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
