"""Writes the bad-input corpus: malformed and hostile pipeline and deployment files.

Run `python3 tests/reliability/corpus/generate.py` to regenerate; the files and
`manifest.json` (file -> a fragment the refusal must contain) are committed. Files too large
to commit (enormous values) are made at test time by `big_cases()`.
Every pipeline here would `touch RAN` if it ever ran, and every deployment's hook would
touch a marker: the tests assert those never appear.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

JOB = '        commands: ["touch RAN"]\n'


def pipe(body: str) -> str:
    return body


OK = "name: p\nstages:\n  - name: s\n    jobs:\n      - name: j\n" + JOB

# (file name, content, fragment the message must contain)
PIPELINES: list[tuple[str, str | bytes, str]] = [
    # -- not YAML ---------------------------------------------------------------------------
    ("yaml_tab_indent.yaml", "name: p\nstages:\n\t- name: s\n", "invalid YAML"),
    ("yaml_unclosed_quote.yaml", 'name: "p\nstages: []\n', "invalid YAML"),
    ("yaml_unclosed_flow.yaml", "name: p\nstages: [{name: s, jobs: [\n", "invalid YAML"),
    ("yaml_bad_indent.yaml", "name: p\n  stages:\n - name: s\n", "invalid YAML"),
    ("yaml_two_documents.yaml", OK + "---\n" + OK, "invalid YAML"),
    ("yaml_bad_alias.yaml", "name: *nothing\nstages: []\n", "invalid YAML"),
    ("yaml_python_tag.yaml", "name: !!python/object/apply:os.system ['touch RAN']\nstages: []\n", "name"),
    ("yaml_python_name.yaml", "name: !!python/name:os.system\nstages: []\n", "constructor"),
    ("yaml_unknown_tag.yaml", "name: !custom p\nstages: []\n", "constructor"),
    ("yaml_colon_garbage.yaml", "name: p: q: r\n", "invalid YAML"),
    ("yaml_null_byte.yaml", "name: p\x00\nstages: []\n", "invalid YAML"),
    ("yaml_control_chars.yaml", "name: p\x07\x1b\nstages: []\n", "invalid YAML"),
    ("yaml_directive_garbage.yaml", "%YAML 9.9\n---\nname: p\n", "invalid YAML"),
    ("yaml_only_dash.yaml", "---\n...\n", "a pipeline is a mapping"),
    ("empty.yaml", "", "empty"),
    ("only_comment.yaml", "# nothing here\n", "empty"),
    ("whitespace.yaml", "   \n\n   \n", "empty"),
    # -- not UTF-8 --------------------------------------------------------------------------
    ("latin1.yaml", "name: caf\xe9\nstages: []\n".encode("latin-1"), "UTF-8"),
    ("utf16.yaml", OK.encode("utf-16"), "UTF-8"),
    ("invalid_continuation.yaml", b"name: p\xc3\x28\nstages: []\n", "UTF-8"),
    ("overlong_utf8.yaml", b"name: \xc0\xafp\nstages: []\n", "UTF-8"),
    ("random_binary.yaml", bytes(range(256)) * 4, "UTF-8"),
    ("gzip_magic.yaml", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(200), "UTF-8"),
    # -- bombs ------------------------------------------------------------------------------
    ("billion_laughs.yaml",
     "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
     + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join(f"*{chr(97 + i)}" for _ in range(10)) + "]\n"
               for i in range(8))
     + "name: p\nstages: []\n", "alias bomb"),
    ("anchor_bomb_in_commands.yaml",
     "x0: &x0 [\"touch RAN\", \"touch RAN\", \"touch RAN\", \"touch RAN\", \"touch RAN\", \"touch RAN\"]\n"
     + "".join(f"x{i + 1}: &x{i + 1} [*x{i}, *x{i}, *x{i}, *x{i}, *x{i}, *x{i}]\n" for i in range(8))
     + "name: p\nstages:\n  - name: s\n    jobs:\n      - name: j\n        commands: *x8\n", "alias bomb"),
    ("merge_key_bomb.yaml",
     "b0: &b0 {k0: v}\n" + "".join(f"b{i + 1}: &b{i + 1} {{<<: [*b{i}], k{i + 1}: [*b{i}, *b{i}, *b{i}, *b{i}, "
                                   f"*b{i}, *b{i}, *b{i}, *b{i}]}}\n" for i in range(9))
     + "name: p\nstages: []\n", "alias bomb"),
    ("deep_nesting_flow.yaml", "name: p\nstages: " + "[" * 500 + "]" * 500 + "\n", "nesting deeper"),
    ("deep_nesting_block.yaml", "name: p\nx:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(100))
     + "  " * 101 + "v\n", "nesting deeper"),
    ("deep_nesting_mapping_flow.yaml", "name: p\nx: " + "{a: " * 300 + "1" + "}" * 300 + "\n", "nesting deeper"),
    ("recursive_alias.yaml", "a: &a [*a]\nname: p\n", "nesting deeper"),
    # -- wrong shape / types ----------------------------------------------------------------
    ("top_level_list.yaml", "- name: p\n- stages: []\n", "a pipeline is a mapping"),
    ("top_level_scalar.yaml", "just a string\n", "a pipeline is a mapping"),
    ("top_level_number.yaml", "42\n", "a pipeline is a mapping"),
    # (A file without `name:` is named after itself, as GitHub Actions does: name_empty.yaml below.)
    ("stages_missing.yaml", "name: p\n", "missing required field 'stages'"),
    ("stages_empty.yaml", "name: p\nstages: []\n", "stages"),
    ("stages_mapping.yaml", "name: p\nstages: {s: {jobs: []}}\n", "stages"),
    ("stage_string.yaml", "name: p\nstages: [build]\n", "stages[0]"),
    ("jobs_empty.yaml", "name: p\nstages:\n  - name: s\n    jobs: []\n", "jobs"),
    ("jobs_string.yaml", "name: p\nstages:\n  - name: s\n    jobs: touch RAN\n", "jobs"),
    ("job_without_commands.yaml", "name: p\nstages:\n  - name: s\n    jobs:\n      - name: j\n", "needs commands"),
    ("commands_mapping.yaml", "name: p\nstages:\n  - name: s\n    jobs:\n      - name: j\n        commands: {a: b}\n",
     "commands"),
    ("commands_nested_list.yaml",
     "name: p\nstages:\n  - name: s\n    jobs:\n      - name: j\n        commands: [[touch RAN]]\n", "commands[0]"),
    ("timeout_string.yaml", OK + "        timeout: soon\n", "timeout"),
    ("timeout_negative.yaml", OK + "        timeout: -5\n", "timeout"),
    ("timeout_zero.yaml", OK + "        timeout: 0\n", "timeout"),
    ("timeout_infinite.yaml", OK + "        timeout: .inf\n", "timeout"),
    ("timeout_nan.yaml", OK + "        timeout: .nan\n", "timeout"),
    ("timeout_enormous.yaml", OK + "        timeout: 1e300\n", "timeout"),
    ("retry_too_many.yaml", OK + "        retry: 1000000\n", "retry"),
    ("retry_negative.yaml", OK + "        retry_count: -1\n", "retry_count"),
    ("retry_and_retry_count.yaml", OK + "        retry: 1\n        retry_count: 1\n", "either retry or retry_count"),
    ("retry_bad_class.yaml", OK + "        retry: {max: 1, when: [always]}\n", "retry.when"),
    ("backoff_huge.yaml", OK + "        retry: {max: 1, backoff: 1e12}\n", "backoff"),
    ("allow_failure_string.yaml", OK + "        allow_failure: maybe\n", "allow_failure"),
    ("max_workers_zero.yaml", "max_workers: 0\n" + OK, "max_workers"),
    ("max_workers_huge.yaml", "max_workers: 99999999999\n" + OK, "max_workers"),
    ("max_workers_bool_list.yaml", "max_workers: [true]\n" + OK, "max_workers"),
    ("fail_fast_list.yaml", "fail_fast: [1]\n" + OK, "fail_fast"),
    ("variables_list.yaml", "variables: [A, B]\n" + OK, "variables"),
    ("variables_bad_name.yaml", "variables: {'A B': 1}\n" + OK, "variable name"),
    ("variables_shell_name.yaml", "variables: {'X;touch RAN': 1}\n" + OK, "variable name"),
    ("variables_nested.yaml", "variables: {A: {b: c}}\n" + OK, "variables.A"),
    ("secrets_bad_name.yaml", "secrets: ['$(touch RAN)']\n" + OK, "secret name"),
    ("secret_unset.yaml", "secrets: [RELIABILITY_NEVER_SET_SECRET]\n" + OK, "has no value"),
    ("runs_on_remote.yaml", OK + "        runs_on: somewhere-else\n", "runs_on"),
    ("shell_unknown.yaml", OK + "        shell: powershell\n", "shell"),
    ("language_unknown.yaml",
     "name: p\nstages:\n  - name: s\n    jobs:\n      - name: j\n        language: brainfuck\n",
     "unknown build language"),
    # -- names ------------------------------------------------------------------------------
    ("name_path_traversal.yaml", OK.replace("name: p", "name: ../../etc"), "name"),
    ("name_sql.yaml", OK.replace("name: p", "name: \"p'; DROP TABLE runs; --\""), "name"),
    ("name_empty.yaml", OK.replace("name: p", "name: ''"), "name"),
    ("name_too_long.yaml", OK.replace("name: p", "name: " + "p" * 300), "name"),
    ("name_number_list.yaml", OK.replace("name: p", "name: [1, 2]"), "name"),
    ("job_name_slash.yaml", OK.replace("name: j", "name: a/../../b"), "name"),
    ("job_name_shell.yaml", OK.replace("name: j", "name: '$(touch RAN)'"), "name"),
    ("job_name_newline.yaml", OK.replace("name: j", "name: \"a\\nb\""), "name"),
    ("job_name_null.yaml", OK.replace("name: j", "name: null"), "name"),
    ("stage_name_unicode_bidi.yaml", OK.replace("name: s", "name: \"s\\u202e\""), "name"),
    ("duplicate_key_top.yaml", "name: p\nname: q\nstages: []\n", "duplicate key"),
    ("duplicate_key_job.yaml", OK + "        commands: [\"echo\"]\n", "duplicate key"),
    ("duplicate_job_names.yaml", OK + "      - name: j\n" + JOB, "j"),
    ("duplicate_stage_names.yaml", OK + "  - name: s\n    jobs:\n      - name: k\n" + JOB, "s"),
    # -- graph ------------------------------------------------------------------------------
    ("cycle_two.yaml", "name: p\nstages:\n  - name: s\n    jobs:\n      - name: a\n        depends_on: [b]\n" + JOB
     + "      - name: b\n        depends_on: [a]\n" + JOB, "cycle"),
    ("cycle_self.yaml", "name: p\nstages:\n  - name: s\n    jobs:\n      - name: a\n        depends_on: [a]\n" + JOB,
     "a"),
    ("cycle_three.yaml", "name: p\nstages:\n  - name: s\n    jobs:\n"
     + "".join(f"      - name: {x}\n        depends_on: [{y}]\n" + JOB
               for x, y in (("a", "c"), ("b", "a"), ("c", "b"))),
     "cycle"),
    ("cycle_stages.yaml", "name: p\nstages:\n  - name: s1\n    depends_on: [s2]\n    jobs:\n      - name: a\n" + JOB
     + "  - name: s2\n    depends_on: [s1]\n    jobs:\n      - name: b\n" + JOB, "cycle"),
    ("depends_on_unknown.yaml", OK.replace("      - name: j\n", "      - name: j\n        depends_on: [ghost]\n"),
     "ghost"),
    ("depends_on_string.yaml", OK.replace("      - name: j\n", "      - name: j\n        depends_on: 7\n"),
     "depends_on"),
    ("if_bad_expression.yaml", OK + "        if: \"branch == \"\n", "if"),
    ("if_unknown_name.yaml", OK + "        if: \"__import__('os').system('touch RAN')\"\n", "if"),
    ("if_dunder.yaml", OK + "        if: \"().__class__.__bases__\"\n", "if"),
    # -- unknown fields ---------------------------------------------------------------------
    ("unknown_top_field.yaml", "nmae: q\n" + OK, "unknown field 'nmae'"),
    ("unknown_job_field.yaml", OK + "        comands: [x]\n", "unknown field 'comands'"),
    ("unknown_stage_field.yaml", OK.replace("    jobs:", "    jbos: []\n    jobs:"), "unknown field 'jbos'"),
    ("unknown_retry_field.yaml", OK + "        retry: {max: 1, forever: true}\n", "unknown field 'forever'"),
    ("unknown_many_fields.yaml", "a: 1\nb: 2\nc: 3\n" + OK, "unknown field"),
    # -- paths that leave the workspace -----------------------------------------------------
    ("artifact_absolute.yaml", OK + "        artifacts: [/etc/passwd]\n", "inside the job workspace"),
    ("artifact_dotdot.yaml", OK + "        artifacts: ['../../state.db']\n", "inside the job workspace"),
    ("working_directory_absolute.yaml", OK + "        working_directory: /tmp\n", "working_directory"),
    ("working_directory_dotdot.yaml", OK + "        working_directory: a/../../..\n", "working_directory"),
    ("deploy_artifact_dotdot.yaml", OK.replace("  - name: s\n", "  - name: s\n    environment: prod\n"
                                                "    deploy: {artifact: ../../..}\n"), "inside the job workspace"),
    ("deploy_without_environment.yaml", OK.replace("  - name: s\n", "  - name: s\n    strategy: canary\n"),
     "need an environment"),
    ("source_missing_dir.yaml", "source: does-not-exist\n" + OK, "source"),
    ("source_is_a_file.yaml", "source: source_is_a_file.yaml\n" + OK, "source"),
    # -- enormous values (small files) ------------------------------------------------------
    ("matrix_explosion.yaml", OK + "        matrix: {a: [1,2,3,4,5,6,7,8,9,10], b: [1,2,3,4,5,6,7,8,9,10], "
     "c: [1,2,3,4,5,6,7,8,9,10]}\n", "at most"),
    ("matrix_empty_values.yaml", OK + "        matrix: {a: []}\n", "has no values"),
    ("matrix_bad_key.yaml", OK + "        matrix: {'a-b': [1]}\n", "matrix key"),
    ("huge_integer.yaml", OK + "        timeout: " + "9" * 5000 + "\n", "bad value"),
]

TARGET = "{kind: local, command: 'touch DEPLOYED', ports: [18799]}"
DEPLOY_ENV = ("environments:\n  - name: staging\n    target: " + TARGET + "\n"
              "    pre_deploy_hooks: [\"touch DEPLOYED\"]\n")

DEPLOYMENTS: list[tuple[str, str | bytes, str]] = [
    ("yaml_garbage.yaml", "environments: [\n", "invalid YAML"),
    ("empty.yaml", "", "empty"),
    ("top_level_list.yaml", "- name: staging\n", "a deployment config is a mapping"),
    ("top_level_scalar.yaml", "staging\n", "a deployment config is a mapping"),
    ("latin1.yaml", "environments:\n  - name: caf\xe9\n".encode("latin-1"), "UTF-8"),
    ("utf16.yaml", DEPLOY_ENV.encode("utf-16"), "UTF-8"),
    ("billion_laughs.yaml",
     "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
     + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join(f"*{chr(97 + i)}" for _ in range(10)) + "]\n"
               for i in range(8)) + "environments: []\n", "alias bomb"),
    ("deep_nesting.yaml", "environments: " + "[" * 400 + "]" * 400 + "\n", "nesting deeper"),
    ("python_tag.yaml", "environments: !!python/object/apply:os.system ['touch DEPLOYED']\n", "environments"),
    ("duplicate_key.yaml", DEPLOY_ENV + "    name: again\n", "duplicate key"),
    ("environments_mapping.yaml", "environments: {staging: {}}\n", "environments"),
    ("environment_string.yaml", "environments: [staging]\n", "environments[0]"),
    ("name_missing.yaml", "environments:\n  - target: " + TARGET + "\n", "name"),
    ("name_traversal.yaml", DEPLOY_ENV.replace("name: staging", "name: ../../etc"), "name"),
    ("name_sql.yaml", DEPLOY_ENV.replace("name: staging", "name: \"x'; DROP TABLE deployments; --\""), "name"),
    ("name_container_injection.yaml", DEPLOY_ENV.replace("name: staging", "name: \"a --privileged\""), "name"),
    ("service_traversal.yaml", DEPLOY_ENV + "    service: ../../root\n", "service"),
    ("service_too_long.yaml", DEPLOY_ENV + "    service: " + "s" * 200 + "\n", "service"),
    ("duplicate_environments.yaml", DEPLOY_ENV + DEPLOY_ENV.replace("environments:\n", ""), "defined twice"),
    ("unknown_field.yaml", DEPLOY_ENV + "    colour: blue\n", "colour"),
    ("type_unknown.yaml", DEPLOY_ENV + "    type: moon\n", "type"),
    ("target_unknown_kind.yaml", DEPLOY_ENV.replace("kind: local", "kind: mainframe"), "mainframe"),
    ("target_no_kind.yaml", DEPLOY_ENV.replace(TARGET, "{image: x}"), "kind"),
    ("target_string.yaml", DEPLOY_ENV.replace(TARGET, "local"), "target"),
    ("target_unknown_field.yaml", DEPLOY_ENV.replace("kind: local,", "kind: local, privileged: true,"), "privileged"),
    ("router_unknown_kind.yaml", DEPLOY_ENV + "    router: {kind: haproxy}\n", "haproxy"),
    ("router_list.yaml", DEPLOY_ENV + "    router: [nginx]\n", "router"),
    ("port_zero.yaml", DEPLOY_ENV + "    port: 0\n", "port"),
    ("port_huge.yaml", DEPLOY_ENV + "    port: 70000\n", "port"),
    ("port_string.yaml", DEPLOY_ENV + "    port: http\n", "port"),
    ("health_unknown_type.yaml", DEPLOY_ENV + "    health_checks: [{type: telepathy}]\n", "health_checks"),
    ("health_url_scheme.yaml", DEPLOY_ENV + "    health_checks: [{type: http, url: 'file:///etc/passwd'}]\n", "http://"),
    ("health_url_placeholder.yaml", DEPLOY_ENV + "    health_checks: [{type: http, url: 'http://{secret}/'}]\n",
     "{host}"),
    ("health_bad_regex.yaml", DEPLOY_ENV + "    health_checks: [{type: http, body_regex: '(['}]\n",
     "regular expression"),
    ("health_timeout_negative.yaml", DEPLOY_ENV + "    health_checks: [{type: tcp, timeout: -1}]\n", "timeout"),
    ("health_retries_huge.yaml", DEPLOY_ENV + "    health_checks: [{type: tcp, retries: 100000000}]\n", "retries"),
    ("health_tcp_port_huge.yaml", DEPLOY_ENV + "    health_checks: [{type: tcp, port: 99999}]\n", "port"),
    ("health_command_empty.yaml", DEPLOY_ENV + "    health_checks: [{type: command, command: ''}]\n", "command"),
    ("hook_empty.yaml", DEPLOY_ENV.replace("[\"touch DEPLOYED\"]", "['']"), "command"),
    ("hook_timeout_huge.yaml", DEPLOY_ENV.replace("[\"touch DEPLOYED\"]",
                                                  "[{command: 'touch DEPLOYED', timeout: 1e9}]"), "timeout"),
    ("hook_mapping.yaml", DEPLOY_ENV.replace("[\"touch DEPLOYED\"]", "{command: x}"), "pre_deploy_hooks"),
    ("env_nested.yaml", DEPLOY_ENV + "    env: {A: {b: c}}\n", "env"),
    ("rollback_string.yaml", DEPLOY_ENV + "    rollback_on_failure: sometimes\n", "rollback_on_failure"),
]


def big_cases() -> list[tuple[str, str, bytes, str]]:
    """(kind, file name, content, fragment) of files too large to commit, made at test time."""
    many_jobs = OK.replace("      - name: j\n" + JOB, "") + "".join(
        f"      - name: j{i}\n" + JOB for i in range(5001))
    return [
        ("pipelines", "huge_file.yaml", (OK + "# " + "x" * 5_000_000 + "\n").encode(), "larger than"),
        ("pipelines", "huge_scalar.yaml", (OK + "description: " + "y" * 4_500_000 + "\n").encode(), "larger than"),
        ("pipelines", "many_jobs.yaml", many_jobs.encode(), "at most 5000"),
        ("pipelines", "many_variables.yaml",
         ("variables:\n" + "".join(f"  V{i}: 1\n" for i in range(210_000)) + OK).encode(), "values"),
        ("deployments", "huge_file.yaml", (DEPLOY_ENV + "# " + "x" * 5_000_000 + "\n").encode(), "larger than"),
    ]


def write() -> dict[str, str]:
    manifest: dict[str, str] = {}
    for sub, cases in (("pipelines", PIPELINES), ("deployments", DEPLOYMENTS)):
        folder = HERE / sub
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.yaml"):
            old.unlink()
        for name, content, fragment in cases:
            assert f"{sub}/{name}" not in manifest, name
            data = content if isinstance(content, bytes) else content.encode("utf-8")
            (folder / name).write_bytes(data)
            manifest[f"{sub}/{name}"] = fragment
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


if __name__ == "__main__":
    print(f"{len(write())} files")
