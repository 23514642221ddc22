"""Generate the demo lakehouse's raw data (seeded, so every run makes the same files).

    python examples/demo/generate.py --out examples/demo/data --rows 5000

Writes raw files (csv customers, jsonl orders by month with updates and deletes, parquet products)
and a SQLite ERP database with payments. Re-running with the same arguments writes nothing.
"""

import argparse
import datetime as dt
import json
import random
import sqlite3
import sys
from pathlib import Path

import polars as pl

COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "PL", "SE", "US"]
SEGMENTS = ["consumer", "smb", "enterprise"]
CATEGORIES = ["books", "games", "garden", "kitchen", "music", "tools"]
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
DAYS = 182  # 2024-01-01 .. 2024-06-30


def _ts(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate(out: Path, *, rows: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    raw = out / "raw"
    for sub in ("customers", "orders", "products"):
        (raw / sub).mkdir(parents=True, exist_ok=True)

    n_customers = max(10, rows // 10)
    n_products = 50
    customers = []
    for cid in range(1, n_customers + 1):
        created = START + dt.timedelta(minutes=rng.randrange(DAYS * 24 * 60))
        customers.append(
            {
                "customer_id": cid,
                "name": f"Customer {cid}",
                "email": f"customer{cid}@example.com",
                "country": rng.choice(COUNTRIES),
                "segment": rng.choice(SEGMENTS),
                "updated_at": created.strftime("%Y-%m-%d %H:%M:%S"),
            }
        )
    # A tenth of the customers change segment later: SCD2 history in silver.
    for cid in rng.sample(range(1, n_customers + 1), n_customers // 10):
        base = customers[cid - 1]
        later = dt.datetime.strptime(base["updated_at"], "%Y-%m-%d %H:%M:%S") + dt.timedelta(
            days=rng.randint(1, 30)
        )
        customers.append(
            {**base, "segment": rng.choice(SEGMENTS), "updated_at": later.strftime("%Y-%m-%d %H:%M:%S")}
        )
    pl.DataFrame(customers).write_csv(raw / "customers" / "customers.csv")

    products = pl.DataFrame(
        {
            "product_id": list(range(1, n_products + 1)),
            "product_name": [f"Product {p}" for p in range(1, n_products + 1)],
            "category": [rng.choice(CATEGORIES) for _ in range(n_products)],
            "list_price": [round(rng.uniform(2, 200), 2) for _ in range(n_products)],
        }
    )
    products.write_parquet(raw / "products" / "products.parquet")
    prices = dict(zip(products["product_id"], products["list_price"], strict=True))

    events: list[dict[str, object]] = []
    for oid in range(1, rows + 1):
        ordered = START + dt.timedelta(minutes=rng.randrange(DAYS * 24 * 60))
        product = rng.randint(1, n_products)
        order = {
            "order_id": oid,
            "customer_id": rng.randint(1, n_customers),
            "product_id": product,
            "order_ts": _ts(ordered),
            "status": "placed",
            "qty": rng.randint(1, 5),
            "unit_price": prices[product],
            "op": "I",
            "updated_at": _ts(ordered),
        }
        events.append(order)
        roll = rng.random()
        if roll < 0.3:  # shipped later: an update
            events.append(
                {
                    **order,
                    "status": "shipped",
                    "op": "U",
                    "updated_at": _ts(ordered + dt.timedelta(hours=rng.randint(2, 72))),
                }
            )
        elif roll < 0.33:  # cancelled: a delete in the change feed
            events.append(
                {
                    **order,
                    "status": "cancelled",
                    "op": "D",
                    "updated_at": _ts(ordered + dt.timedelta(hours=rng.randint(1, 24))),
                }
            )
    by_month: dict[str, list[dict[str, object]]] = {}
    for event in sorted(events, key=lambda e: (str(e["updated_at"]), int(str(e["order_id"])))):
        by_month.setdefault(str(event["updated_at"])[:7], []).append(event)
    for month, items in by_month.items():
        with (raw / "orders" / f"orders-{month}.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(item) + "\n" for item in items)

    db = out / "erp.sqlite"
    db.unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "CREATE TABLE payments (payment_id INTEGER PRIMARY KEY, order_id INTEGER, amount REAL, method TEXT, paid_at TEXT)"
        )
        payments = []
        pid = 0
        for event in events:
            if event["op"] == "I" and rng.random() < 0.8:
                pid += 1
                paid = dt.datetime.strptime(str(event["order_ts"]), "%Y-%m-%dT%H:%M:%SZ") + dt.timedelta(
                    minutes=rng.randint(1, 600)
                )
                amount = round(float(str(event["unit_price"])) * int(str(event["qty"])), 2)
                payments.append(
                    (
                        pid,
                        event["order_id"],
                        amount,
                        rng.choice(["card", "invoice", "paypal"]),
                        paid.isoformat(),
                    )
                )
        conn.executemany("INSERT INTO payments VALUES (?, ?, ?, ?, ?)", payments)
    conn.close()
    return {
        "customers": len(customers),
        "orders_events": len(events),
        "products": n_products,
        "payments": len(payments),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--rows", type=int, default=5000, help="number of orders (default 5000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--force", action="store_true", help="regenerate even when the data is there")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    marker = args.out / "generated.json"
    wanted = {"rows": args.rows, "seed": args.seed}
    if not args.force and marker.exists() and json.loads(marker.read_text()) == wanted:
        print(f"demo data already in {args.out} ({args.rows} orders, seed {args.seed}): nothing to do")
        return 0
    counts = generate(args.out, rows=args.rows, seed=args.seed)
    marker.write_text(json.dumps(wanted))
    print(f"demo data written to {args.out}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
