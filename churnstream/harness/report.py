"""Turn harness results into the printed report and TEST_RESULTS.md (the plot is plots.py).

TEST_RESULTS.md is always written from a results dict by :func:`render_markdown`; nobody edits it
by hand, so every figure in it comes from the run named at its top. Its first line is the verdict
and the reason in words. Figures are rounded to what they mean (figures.py).
"""

from __future__ import annotations

from typing import Any

from churnstream.harness import figures as fmt
from churnstream.harness.plan import SUBJECT_TEXT, Subject
from churnstream.harness.report_suite import suite_sections


def _stages(counts: dict[str, int]) -> str:
    """{'decode': 3, 'validate': 2} -> 'decode 3, validate 2'."""
    return ", ".join(f"{stage} {count:,}" for stage, count in counts.items()) or "none"


def _ranks(latency: dict[str, Any]) -> str:
    return " / ".join(f"{name} {fmt.ms_bare(latency[name])}" for name in ("p50", "p95", "p99", "max")) + " ms"


def _producer_line(producer: dict[str, Any]) -> str:
    requested = producer["requested_rate"]
    rates = f"achieved {fmt.rate(producer['achieved_rate'])}"
    if requested is not None:
        rates = f"rate requested {fmt.rate(requested)}, {rates}"
    return (
        f"  producer : sent {fmt.count(producer['sent'])}, acknowledged {fmt.count(producer['acknowledged'])}, "
        f"failed {fmt.count(producer['failed'])}; {rates}"
    )


def scenario_lines(result: dict[str, Any]) -> list[str]:
    """The human-readable block for one run (stdout and the markdown share it)."""
    latency, processing = result["latency_ms"], result["processing_latency_ms"]
    throughput = result["throughput"]
    subject = result.get("subject", Subject.CONSUMER)
    what = "raw events read back" if subject == Subject.FLOOR else "predictions"
    lines = [f"run {result['run_id']}: {result['plan_text']}", _producer_line(result["producer"])]
    if subject != Subject.FLOOR:
        lines.append(
            f"  consumers: scored {fmt.count(result['scored'])}, dead-lettered {fmt.count(result['dead_lettered'])} "
            f"(by stage: {_stages(result['dead_letter_stages'])}); throughput "
            f"{fmt.rate(throughput['consumer_events_per_sec'])} by their own count, "
            f"{fmt.rate(throughput['observed_outcomes_per_sec'])} outcomes observed"
        )
    lines.append(
        f"  latency  : end-to-end (received - event_ts) {_ranks(latency)} over {fmt.count(latency['count'])} {what}"
    )
    if processing["count"]:
        lines.append(f"             processing (processed_ts - event_ts) {_ranks(processing)}")
    lines.append(
        f"  accounting: {fmt.count(result['raw_records'])} raw records, lost {result['lost']}, duplicated "
        f"{result['duplicated']}; all outcomes readable {fmt.seconds(result['all_readable_after_producer_start_s'])} "
        "after the producer started"
    )
    if Subject(subject).scores:
        sample = result["sample_check"]
        lines.append(
            f"  sample   : {sample['checked']} probabilities recomputed offline, {sample['mismatches']} mismatches"
        )
    for criterion in result["criteria"]:
        mark = "PASS" if criterion["passed"] else "FAIL"
        lines.append(f"  [{mark}] {criterion['name']}: {criterion['detail']}")
    return lines + _log_tails(result)


def _log_tails(result: dict[str, Any]) -> list[str]:
    lines = []
    for index, consumer in enumerate(result["consumers"]):
        if consumer["log_tail"]:
            lines.append(f"  consumer-{index} exited {consumer['exit_code']}; last log lines:")
            lines += ["    " + line for line in consumer["log_tail"].splitlines()]
    producer = result["producer"]
    if producer["log_tail"]:
        lines.append(f"  producer exited {producer['exit_code']}; last log lines:")
        lines += ["    " + line for line in producer["log_tail"].splitlines()]
    return lines


def run_verdict(scenarios: list[dict[str, Any]]) -> str:
    """A single run's (or a list of runs') verdict and reason: the criteria that failed, with their figures."""
    failed = [
        f"{criterion['name']} ({criterion['detail']})"
        for result in scenarios
        for criterion in result["criteria"]
        if not criterion["passed"]
    ]
    if not failed:
        return f"PASSED: every criterion of {len(scenarios)} run(s) met."
    return f"FAILED: {len(failed)} criteria failed: " + "; ".join(failed) + "."


def _where(results: dict[str, Any]) -> list[str]:
    env = results["environment"]
    broker = env["broker"]
    lines = [
        "## Where it ran",
        "",
        f"- Machine: {env['cpu_count']} CPU(s), {env['cpu_model'] or 'unknown CPU'}; {env['platform']}",
        f"- Broker: {broker['bootstrap_servers']}, {broker['brokers']} broker(s), Kafka API {broker['api_version']}"
        + (f" ({results['broker_note']})" if results.get("broker_note") else ""),
        f"- Python {env['python']}; " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
    ]
    quix = env.get("quix")
    if quix:
        lines.append(
            "- Quix Streams subject (.run/quix): "
            + ", ".join(f"{k} {v}" for k, v in quix["packages"].items())
            + "; "
            + ", ".join(f"{k} {v}" for k, v in quix["options"].items())
        )
    options = results.get("provenance", {}).get("consumer_options")
    if options:
        reader = options["latency_reader"]
        lines.append(
            "- Consumer (and bare loop) options: "
            + ", ".join(f"{k} {v}" for k, v in options.items() if k not in ("latency_reader", "extra_arguments"))
            + (f"; extra arguments {' '.join(options['extra_arguments'])}" if options["extra_arguments"] else "")
        )
        lines.append("- Latency reader: " + ", ".join(f"{k} {v}" for k, v in reader.items()))
    return [*lines, ""]


def _provenance_line(results: dict[str, Any], results_link: str | None) -> str:
    prov = results.get("provenance", {})
    commit = prov.get("commit")
    state = "unknown commit"
    if commit:
        state = f"commit `{commit[:12]}`" + (" with uncommitted changes" if prov.get("dirty") else " (clean tree)")
    load = prov.get("load_average_at_start")
    load_text = " / ".join(f"{v:.2f}" for v in load) if load else fmt.MISSING
    parts = [
        f"Run on {results['finished_at']} (UTC, when it finished) from {state}.",
        f"Load average at the start: {load_text} (1, 5, 15 min; {results['environment']['cpu_count']} CPUs).",
        f"Model `{prov.get('model_version') or fmt.MISSING}`.",
    ]
    if results_link:
        parts.append(f"Every figure below is in the results JSON, [{results_link}]({results_link}).")
    return " ".join(parts)


def render_markdown(results: dict[str, Any], plot_name: str | None, results_link: str | None = None) -> str:
    """The markdown report; a suite's (goals, baselines) or a single run's."""
    lines = [
        f"**{results['verdict']}**",
        "",
        "# Test results",
        "",
        "<!-- Generated by test_pipeline.py from a real run. Do not edit by hand: rerun the command below. -->",
        "",
        _provenance_line(results, results_link),
        "",
        "```bash",
        results["command"],
        "```",
        "",
    ]
    if results.get("goals") is not None:
        lines += suite_sections(results, plot_name)
    else:
        lines += _single_sections(results, plot_name)
    lines += _where(results)
    lines += [
        "## How to read this",
        "",
        "End-to-end latency is the wall-clock time the harness's latency reader (a process of its own, "
        "`read_committed`, polling in a tight loop) received a prediction, minus the event's `event_ts` "
        "(set by the producer when it created the event); for the floor run, when it received the raw event "
        "itself. Processing latency is `processed_ts - event_ts` (when the consumer scored it). Lost and "
        "duplicated count raw records (partition, offset) without exactly one outcome. "
        "docs/harness.md explains every figure and goal.",
        "",
    ]
    return "\n".join(lines)


def _single_sections(results: dict[str, Any], plot_name: str | None) -> list[str]:
    lines = [
        "## Runs",
        "",
        "| Run | Sent | Scored | Dead-lettered | Lost | Duplicated | p50 ms | p95 ms | p99 ms | max ms | Result |",
        "| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --- |",
    ]
    for result in results["scenarios"]:
        latency = result["latency_ms"]
        lines.append(
            f"| {result['plan_text']} | {fmt.count(result['producer']['sent'])} | {fmt.count(result['scored'])} | "
            f"{fmt.count(result['dead_lettered'])} | {result['lost']} | {result['duplicated']} | "
            + " | ".join(fmt.ms_bare(latency[k]) for k in ("p50", "p95", "p99", "max"))
            + f" | {'pass' if result['passed'] else 'FAIL'} |"
        )
    lines.append("")
    for result in results["scenarios"]:
        title = result["label"] or SUBJECT_TEXT.get(result.get("subject"), "") or result["plan_text"]
        lines += [f"### {title}", "", "```text", *scenario_lines(result), "```", ""]
    if plot_name:
        lines += ["## Throughput and latency", "", f"![throughput over time and latency CCDF]({plot_name})", ""]
    return lines
