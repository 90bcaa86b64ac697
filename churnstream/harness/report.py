"""Turn harness results into the printed report, TEST_RESULTS.md and its plot.

TEST_RESULTS.md is always written from a results dict by :func:`render_markdown`; nobody edits it
by hand, so every figure in it comes from the run named at its top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from churnstream.errors import ConfigError

REPORT_EXTRA_HINT = "the plot needs matplotlib: pip install 'telco-churn-stream[report]' (make installs it)"


def _pyplot() -> Any:
    """matplotlib, imported only when a report is written: it is the ``report`` extra, not a runtime need."""
    try:
        import matplotlib  # noqa: PLC0415
    except ImportError:
        raise ConfigError(REPORT_EXTRA_HINT) from None
    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _stages(counts: dict[str, int]) -> str:
    """{'decode': 3, 'validate': 2} -> 'decode 3, validate 2'."""
    return ", ".join(f"{stage} {count:,}" for stage, count in counts.items()) or "none"


def scenario_lines(result: dict[str, Any]) -> list[str]:
    """The human-readable block for one scenario (stdout and the markdown share it)."""
    producer = result["producer"]
    latency = result["latency_ms"]
    processing = result["processing_latency_ms"]
    throughput = result["throughput"]
    lines = [
        f"run {result['run_id']}: {result['plan_text']}",
        f"  producer : sent {_fmt(producer['sent'])}, acknowledged {_fmt(producer['acknowledged'])}, "
        f"failed {_fmt(producer['failed'])}; rate requested {_fmt(producer['requested_rate'])}/s, "
        f"achieved {_fmt(producer['achieved_rate'])}/s",
        f"  consumers: scored {_fmt(result['scored'])}, dead-lettered {_fmt(result['dead_lettered'])} "
        f"(by stage: {_stages(result['dead_letter_stages'])}); throughput "
        f"{_fmt(throughput['consumer_events_per_sec'])} events/s by the consumers' own count, "
        f"{_fmt(throughput['observed_outcomes_per_sec'])} outcomes/s observed",
        f"  latency  : end-to-end (readable - event_ts) p50 {_fmt(latency['p50'])} / p95 {_fmt(latency['p95'])} / "
        f"p99 {_fmt(latency['p99'])} / max {_fmt(latency['max'])} ms over {_fmt(latency['count'])} predictions",
        f"             processing (processed_ts - event_ts) p50 {_fmt(processing['p50'])} / p95 "
        f"{_fmt(processing['p95'])} / p99 {_fmt(processing['p99'])} / max {_fmt(processing['max'])} ms",
        f"  accounting: {_fmt(result['raw_records'])} raw records, lost {result['lost']}, duplicated "
        f"{result['duplicated']}; all outcomes readable {_fmt(result['all_readable_after_producer_start_s'], 2)} s "
        "after the producer started",
        f"  sample   : {result['sample_check']['checked']} probabilities recomputed offline, "
        f"{result['sample_check']['mismatches']} mismatches",
    ]
    for criterion in result["criteria"]:
        mark = "PASS" if criterion["passed"] else "FAIL"
        lines.append(f"  [{mark}] {criterion['name']}: {criterion['detail']}")
    for index, consumer in enumerate(result["consumers"]):
        if consumer["log_tail"]:
            lines.append(f"  consumer-{index} exited {consumer['exit_code']}; last log lines:")
            lines += ["    " + line for line in consumer["log_tail"].splitlines()]
    if producer["log_tail"]:
        lines.append(f"  producer exited {producer['exit_code']}; last log lines:")
        lines += ["    " + line for line in producer["log_tail"].splitlines()]
    return lines


def plot(results: dict[str, Any], path: Path) -> Path:
    """Throughput over time and the latency distribution, one row per scenario."""
    plt = _pyplot()
    scenarios = results["scenarios"]
    figure, axes = plt.subplots(len(scenarios), 2, figsize=(12, 3.6 * len(scenarios)), squeeze=False)
    for row, result in enumerate(scenarios):
        timeline = result["timeline"]
        left, right = axes[row]
        bin_s = timeline.get("bin_s", 1.0)
        for key, label in (("produced_per_s", "produced (raw topic)"), ("readable_per_s", "outcomes readable")):
            rates = timeline[key]
            if rates:
                left.stairs(rates, [i * bin_s for i in range(len(rates) + 1)], label=label, linewidth=1.5)
        left.set_title(f"{result['label'] or result['mode']}: throughput", fontsize=10)
        left.set_xlabel("seconds since the producer started")
        left.set_ylabel("events per second")
        left.legend(fontsize=8)
        latencies = result["latencies_ms_sample"]
        if latencies:
            right.hist(latencies, bins=60, color="tab:green")
            for name, style in (("p50", ":"), ("p95", "--"), ("p99", "-")):
                value = result["latency_ms"][name]
                right.axvline(value, color="black", linestyle=style, label=f"{name} {value:.1f} ms")
            right.legend(fontsize=8)
        right.set_title(f"{result['label'] or result['mode']}: end-to-end latency", fontsize=10)
        right.set_xlabel("milliseconds (readable - event_ts)")
        right.set_ylabel("predictions")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def render_markdown(results: dict[str, Any], plot_name: str | None) -> str:
    env = results["environment"]
    verdict = "PASSED" if results["passed"] else "FAILED"
    lines = [
        "# Test results",
        "",
        "<!-- Generated by test_pipeline.py from a real run. Do not edit by hand: rerun the command below. -->",
        "",
        f"**{verdict}** on {results['finished_at']} (UTC), run by:",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        "## Where it ran",
        "",
        f"- Machine: {env['cpu_count']} CPU(s), {env['cpu_model'] or 'unknown CPU'}; {env['platform']}",
        f"- Broker: {env['broker']['bootstrap_servers']}, {env['broker']['brokers']} broker(s), "
        f"Kafka API {env['broker']['api_version']}"
        + (f" ({results['broker_note']})" if results.get("broker_note") else ""),
        f"- Python {env['python']}; " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        "",
        "## Scenarios",
        "",
        *(
            [
                f"Before them, a warm-up run ({results['warm_up']['plan_text']}) let the broker's JIT compile its "
                "code; it is not judged or counted. ",
                "",
            ]
            if results.get("warm_up")
            else []
        ),
        "| Scenario | Sent | Scored | Dead-lettered | Lost | Duplicated | p50 ms | p95 ms | p99 ms | max ms | Result |",
        "| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --- |",
    ]
    for result in results["scenarios"]:
        latency = result["latency_ms"]
        lines.append(
            f"| {result['plan_text']} | {_fmt(result['producer']['sent'])} | {_fmt(result['scored'])} | "
            f"{_fmt(result['dead_lettered'])} | {result['lost']} | {result['duplicated']} | {_fmt(latency['p50'])} | "
            f"{_fmt(latency['p95'])} | {_fmt(latency['p99'])} | {_fmt(latency['max'])} | "
            f"{'pass' if result['passed'] else 'FAIL'} |"
        )
    lines.append("")
    for result in results["scenarios"]:
        lines += [f"### {result['label'] or result['plan_text']}", "", "```text", *scenario_lines(result), "```", ""]
    if plot_name:
        lines += ["## Throughput and latency", "", f"![throughput over time and latency distribution]({plot_name})", ""]
    lines += [
        "## How to read this",
        "",
        "End-to-end latency is the time a prediction became readable by the harness's own `read_committed` "
        "consumer minus the event's `event_ts` (set by the producer when it created the event). Processing "
        "latency is `processed_ts - event_ts` (when the consumer scored it). Lost and duplicated count raw "
        "records (partition, offset) without exactly one outcome. docs/harness.md explains every figure.",
        "",
    ]
    return "\n".join(lines)
