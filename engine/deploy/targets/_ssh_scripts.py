"""The shell the SSH target runs on its hosts, built from quoted paths (pure: text in, text out).

Each script does its work in one round trip. Arguments named `q` map a path's name to its
value already quoted for the shell (`shlex.quote`).
"""

from __future__ import annotations

import shlex

__all__ = [
    "check_reusable",
    "launch",
    "list_instances",
    "list_releases",
    "prune",
    "read_slot",
    "stop",
    "tail",
    "unpack",
]

# The process state letter of the pid in a variable ("gone" when there is no such process).
_STATE = "s=$(sed 's/.*) //' /proc/${p:-none}/stat 2>/dev/null | cut -d' ' -f1); "


def prune(q: dict[str, str], keep: str, keep_releases: int) -> str:
    """Keep the newest `keep_releases` releases, `keep`, what `current` names, and any in use."""
    return (
        f"{{ cd {q['releases']} && {{ "
        f"used=\"{keep} $(basename \"$(readlink {q['current']})\" 2>/dev/null) "
        f"$(cat {q['run']}/*.release 2>/dev/null)\"; "
        f"ls -1t | tail -n +{keep_releases + 1} | while read -r d; do "
        "case \" $used \" in *\" $d \"*) ;; *) rm -rf -- \"$d\";; esac; done; "
        # a moved-aside directory goes once no process works in it any more
        "for d in .replaced-*; do [ -d \"$d\" ] || continue; "
        "for c in /proc/[0-9]*/cwd; do readlink \"$c\"; done 2>/dev/null | grep -qF \"/${d}\" "
        "|| rm -rf -- \"$d\"; done; true; }; }"
    )


def check_reusable(q: dict[str, str], digest: str, prune_script: str) -> str:
    """Print "reused" when the release directory was made from the same bytes (and touch it, so
    pruning counts it as recent); else make the directories an upload needs."""
    return (
        f"if grep -qF {shlex.quote(digest)} {q['release']}/.release.json 2>/dev/null; then "
        f"touch {q['release']} && {prune_script} && echo reused; "
        f"else mkdir -p {q['releases']} {q['run']} {q['logs']}; fi"
    )


def unpack(q: dict[str, str], staging: str, upload: str, replaced: str, prune_script: str) -> str:
    """Unpack an uploaded tarball beside the final place and rename: a release directory is whole
    or absent. A directory of the same version with other bytes is moved aside (to `replaced`),
    not deleted: instances started from it keep their working directory."""
    qs, qu = shlex.quote(staging), shlex.quote(upload)
    return (
        f"if mkdir {qs} && tar -xf {qu} -C {qs} && mv {qu}.json {qs}/.release.json && rm -f {qu} "
        f"&& {{ [ ! -e {q['release']} ] || mv -T {q['release']} {shlex.quote(replaced)}; }} "
        f"&& mv -T {qs} {q['release']}; then {prune_script}; "
        f"else rc=$?; rm -rf {qs} {qu} {qu}.json; exit $rc; fi"
    )


def launch(
    q: dict[str, str], *, link_target: str, tmp_link: str, release_name: str, banner: str, exports: str,
    command: str, record_before: str, record_after: str,
) -> str:
    """Switch `current` atomically, then start the command in its own session from the release
    directory; the record is written with the pid spliced between `record_before` and
    `record_after`. Prints the pid."""
    return (
        f"set -e; mkdir -p {q['run']} {q['logs']}; "
        # atomic switch: readers see the old or the new link, never none
        f"ln -sfn {shlex.quote(link_target)} {shlex.quote(tmp_link)}; "
        f"mv -T {shlex.quote(tmp_link)} {q['current']}; "
        f"echo {shlex.quote(release_name)} > {q['release_file']}; "
        f"cd {q['release']}; "
        f"printf '%s\\n' {shlex.quote(banner)} >> {q['log']}; "
        f"env {exports} setsid sh -c {shlex.quote(command)} "
        f"</dev/null >>{q['log']} 2>&1 & "
        f"pid=$!; echo $pid > {q['pid_file']}.tmp; mv {q['pid_file']}.tmp {q['pid_file']}; "
        f"printf '%s\"%s\"%s' {shlex.quote(record_before)} \"$pid\" {shlex.quote(record_after)} "
        f"> {q['json_file']}.tmp; "
        f"mv {q['json_file']}.tmp {q['json_file']}; echo $pid"
    )


def read_slot(json_file: str, pid_file: str, extra: str = "") -> str:
    """The slot's record, then "@state <state letter or gone>", then what `extra` prints."""
    return (
        f"cat {shlex.quote(json_file)} 2>/dev/null; echo; p=$(cat {shlex.quote(pid_file)} "
        f"2>/dev/null); {_STATE}"
        f"echo \"@state ${{s:-gone}}\"; {extra or 'true'}"
    )


def stop(q: dict[str, str], want: str, ticks: int) -> str:
    """TERM the slot's process group, KILL it after `ticks` tenths of a second, remove the records.
    The pid recorded for the slot wins; when the slot records another instance than `want`,
    ours is gone already and the slot is left alone. Fails when the process survives SIGKILL."""
    return (
        f"p=$(cat {q['pid_file']} 2>/dev/null); want={shlex.quote(want)}; "
        "if [ -n \"$want\" ] && [ -n \"$p\" ] && [ \"$p\" != \"$want\" ]; then exit 0; fi; "
        "p=${p:-$want}; "
        "alive() { s=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -d' ' -f1); "
        "[ -n \"$s\" ] && [ \"$s\" != Z ]; }; "
        "case \"$p\" in ''|*[!0-9]*) ;; *) "
        "kill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null; "
        f"i=0; while alive && [ $i -lt {ticks} ]; do sleep 0.1; i=$((i+1)); done; "
        "if alive; then kill -KILL -$p 2>/dev/null || kill -KILL $p 2>/dev/null; sleep 0.2; fi; "
        "if alive; then echo \"pid $p survives SIGKILL\" >&2; exit 1; fi;; esac; "
        f"rm -f {q['pid_file']} {q['json_file']} {q['release_file']}"
    )


def list_instances(run_dir: str) -> str:
    """Each record in `run_dir`, each followed by "@state <state of the process its pid file names>"."""
    return (
        f"for f in {shlex.quote(run_dir)}/*.json; do [ -f \"$f\" ] || continue; cat \"$f\"; echo; "
        f"p=$(cat \"${{f%.json}}.pid\" 2>/dev/null); {_STATE}"
        "echo \"@state ${s:-gone}\"; done; true"
    )


def list_releases(q: dict[str, str]) -> str:
    """The release `current` names (or an empty line), then every release directory."""
    return f"basename \"$(readlink {q['current']})\" 2>/dev/null || echo; ls -1 {q['releases']} 2>/dev/null; true"


def tail(path: str, max_bytes: int) -> str:
    return f"tail -c {int(max_bytes)} {shlex.quote(path)}"
