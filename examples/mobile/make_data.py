"""Write a made-up mobile operator's subscribers as a CSV: the example data of docs/howto/own-data.md.

    python examples/mobile/make_data.py --rows 3000 --out data/mobile.csv

Deterministic for a seed. The churn label (column ``churned``, 0 or 1) depends on the features
through a known formula, so a model has something to learn: short tenure, support tickets, dropped
calls and the prepaid plan raise the risk; a business plan and long tenure lower it. About 1 cell
in 20 of ``region`` and 1 in 12 of ``dropped_calls`` is empty (null in the schema).
"""

from __future__ import annotations

import argparse
import csv
import math
import random
from pathlib import Path

COLUMNS = (
    "subscriber_id", "plan", "region", "months_active", "data_gb", "dropped_calls", "roaming",
    "support_tickets", "monthly_fee", "churned",
)  # fmt: skip
PLANS = ("prepaid", "postpaid", "business")
REGIONS = tuple(f"{country}-{number:02d}" for country in ("DE", "AT", "CH") for number in range(1, 9))


def subscribers(rows: int, seed: int) -> list[dict[str, str]]:
    generator = random.Random(seed)
    out = []
    for index in range(rows):
        plan = generator.choices(PLANS, weights=(5, 4, 1))[0]
        months = int(generator.expovariate(1 / 30))
        tickets = min(int(generator.expovariate(1 / 1.2)), 40)
        dropped = int(generator.expovariate(1 / 3))
        data_gb = round(generator.lognormvariate(1.2, 0.8), 2)
        roaming = generator.random() < 0.15
        fee = round({"prepaid": 15, "postpaid": 35, "business": 60}[plan] + generator.uniform(-5, 15), 2)
        score = (
            -1.0
            + {"prepaid": 0.8, "postpaid": 0.0, "business": -1.0}[plan]
            - 0.04 * min(months, 60)
            + 0.45 * tickets
            + 0.12 * min(dropped, 15)
            - 0.05 * data_gb
            + (0.3 if roaming else 0.0)
        )
        churned = generator.random() < 1 / (1 + math.exp(-score))
        out.append(
            {
                "subscriber_id": f"S{seed:02d}-{index:06d}",
                "plan": plan,
                "region": "" if generator.random() < 0.05 else generator.choice(REGIONS),
                "months_active": str(months),
                "data_gb": f"{data_gb:.2f}",
                "dropped_calls": "" if generator.random() < 0.08 else str(dropped),
                "roaming": "true" if roaming else "false",
                "support_tickets": str(tickets),
                "monthly_fee": f"{fee:.2f}",
                "churned": "1" if churned else "0",
            }
        )
    return out


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000, help="subscribers (default %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("data/mobile.csv"), help="the CSV (default %(default)s)")
    args = parser.parse_args(argv)
    print(write(args.out, subscribers(args.rows, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
