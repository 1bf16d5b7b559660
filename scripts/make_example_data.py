#!/usr/bin/env python
"""Generate the small labelled datasets the example pipelines in ``configs/`` run on.

    python scripts/make_example_data.py            # writes configs/data/*.csv
    python scripts/make_example_data.py --out DIR  # somewhere else

The output is deterministic (fixed numpy seeds), so the metrics quoted in
``configs/README.md`` are reproducible. Each dataset is synthetic but shaped
like the real thing: normal operation is correlated and seasonal, anomalies
come from a distinctly different but overlapping distribution (so no detector
reaches a perfect score), and a label column marks them for evaluation only.

- ``transactions.csv``   card payments; ``is_fraud`` ~1.5 %
- ``sensors.csv``        machine telemetry; ``is_fault`` ~2 %
- ``server_metrics.csv`` host metrics; ``is_incident`` ~2 %
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "configs" / "data"
START = pd.Timestamp("2024-03-04 00:00:00")


# --------------------------------------------------------------------------- card fraud
MERCHANTS = ["grocery", "fuel", "restaurant", "online", "electronics", "travel", "pharmacy", "entertainment"]
# share of normal spend, typical amount (median, EUR), log-sd
MERCHANT_MIX = {
    "grocery": (0.28, 35.0, 0.55),
    "fuel": (0.13, 55.0, 0.35),
    "restaurant": (0.17, 28.0, 0.50),
    "online": (0.17, 45.0, 0.80),
    "electronics": (0.05, 180.0, 0.80),
    "travel": (0.04, 320.0, 0.70),
    "pharmacy": (0.08, 18.0, 0.60),
    "entertainment": (0.08, 40.0, 0.60),
}
# fraud prefers card-not-present and resaleable goods
FRAUD_MIX = {"online": 0.35, "electronics": 0.25, "travel": 0.12, "fuel": 0.08, "grocery": 0.06,
             "restaurant": 0.04, "pharmacy": 0.02, "entertainment": 0.08}


def make_transactions(n: int = 12_000, fraud_rate: float = 0.015, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_customers = 900
    cust_scale = rng.lognormal(0.0, 0.45, n_customers)  # some customers spend more
    cust_home_spread = rng.gamma(2.0, 2.5, n_customers)  # typical km from home
    cust_foreign = rng.beta(0.6, 30.0, n_customers)  # a few travel a lot

    n_fraud = int(round(n * fraud_rate))
    is_fraud = np.zeros(n, dtype=np.int8)
    is_fraud[rng.choice(n, n_fraud, replace=False)] = 1
    fraud = is_fraud == 1

    customer = rng.integers(0, n_customers, n)
    # timestamps over 30 days; normal spend follows a day curve, fraud is flatter with a night bump
    day = rng.integers(0, 30, n)
    hour_p = np.array([1, 0.5, 0.3, 0.2, 0.2, 0.4, 1.2, 2.5, 4, 5, 5.5, 6.5,
                       7.5, 7, 6, 6, 6.5, 7.5, 8, 7, 5.5, 4, 2.8, 1.8])
    hour = rng.choice(24, n, p=hour_p / hour_p.sum())
    night_p = np.array([6, 7, 7, 6, 5, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 4, 5, 6], dtype=float)
    hour[fraud] = rng.choice(24, fraud.sum(), p=night_p / night_p.sum())
    minute = rng.integers(0, 60, n)
    second = rng.integers(0, 60, n)
    ts = START + pd.to_timedelta(day, "D") + pd.to_timedelta(hour, "h") + pd.to_timedelta(minute, "m") \
        + pd.to_timedelta(second, "s")

    names = list(MERCHANT_MIX)
    weights = np.array([MERCHANT_MIX[m][0] for m in names])
    merchant = rng.choice(names, n, p=weights / weights.sum())
    fw = np.array([FRAUD_MIX[m] for m in names])
    merchant[fraud] = rng.choice(names, fraud.sum(), p=fw / fw.sum())

    med = np.array([MERCHANT_MIX[m][1] for m in merchant])
    sd = np.array([MERCHANT_MIX[m][2] for m in merchant])
    amount = rng.lognormal(np.log(med * cust_scale[customer]), sd)
    # fraud: larger amounts (card testing adds a few tiny ones)
    f_idx = np.flatnonzero(fraud)
    big = rng.random(f_idx.size) < 0.8
    amount[f_idx[big]] *= rng.lognormal(1.3, 0.7, big.sum())
    amount[f_idx[~big]] = rng.uniform(0.5, 3.0, (~big).sum())
    amount = np.round(np.clip(amount, 0.5, 25_000), 2)

    # the customer's average ticket (what a feature store would hold)
    cust_avg = pd.Series(amount[~fraud]).groupby(customer[~fraud]).mean()
    avg = cust_avg.reindex(customer).to_numpy()
    avg = np.where(np.isnan(avg), np.nanmedian(avg), avg)
    amount_vs_avg = np.round(amount / avg, 3)

    distance = rng.exponential(cust_home_spread[customer])
    travel = merchant == "travel"
    distance[travel] += rng.exponential(150.0, travel.sum())
    distance[f_idx] = rng.lognormal(np.log(120.0), 1.4, f_idx.size)  # often far away, sometimes local
    distance = np.round(distance, 1)

    is_foreign = (rng.random(n) < cust_foreign[customer] + 0.6 * travel * cust_foreign[customer]).astype(np.int8)
    is_foreign[f_idx] = (rng.random(f_idx.size) < 0.45).astype(np.int8)
    distance[is_foreign == 1] += rng.uniform(200, 2000, (is_foreign == 1).sum()).round(1)

    txns = rng.poisson(2.2, n) + 1
    burst = rng.random(f_idx.size) < 0.6  # fraud often comes in bursts
    txns[f_idx] = np.where(burst, rng.poisson(9, f_idx.size) + 3, rng.poisson(2.5, f_idx.size) + 1)

    df = pd.DataFrame({
        "timestamp": ts,
        "customer_id": [f"C{c:05d}" for c in customer],
        "amount": amount,
        "merchant_category": merchant,
        "hour": hour.astype(np.int64),
        "distance_from_home_km": distance,
        "txns_last_24h": txns.astype(np.int64),
        "amount_vs_customer_avg": amount_vs_avg,
        "is_foreign": is_foreign,
        "is_fraud": is_fraud,
    }).sort_values("timestamp", kind="stable").reset_index(drop=True)
    df.insert(0, "transaction_id", [f"T{i:07d}" for i in range(1, n + 1)])
    df["timestamp"] = df["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    # a few records arrive without a location (the GPS lookup failed): they show the reject sink at work
    gaps = rng.choice(np.flatnonzero(df["is_fraud"].to_numpy() == 0), 6, replace=False)
    df["distance_from_home_km"] = df["distance_from_home_km"].astype("float64")
    df.loc[gaps, "distance_from_home_km"] = np.nan
    return df


# --------------------------------------------------------------------------- manufacturing
def _ar1(rng, n: int, phi: float, sigma: float) -> np.ndarray:
    out = np.empty(n)
    x = 0.0
    eps = rng.normal(0, sigma, n)
    for i in range(n):
        x = phi * x + eps[i]
        out[i] = x
    return out


def _episodes(rng, n: int, target: int, min_len: int, max_len: int, taken: np.ndarray) -> list[tuple[int, int]]:
    """Non-overlapping [start, end) runs inside 0..n, about ``target`` rows in total."""
    out, total, tries = [], 0, 0
    while total < target and tries < 10_000:
        tries += 1
        length = int(rng.integers(min_len, max_len + 1))
        start = int(rng.integers(50, n - length - 1))
        if taken[max(0, start - 5):start + length + 5].any():
            continue
        taken[start:start + length] = True
        out.append((start, start + length))
        total += length
    return out


def make_sensors(n_machines: int = 8, per_machine: int = 1250, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    t = START + pd.to_timedelta(np.arange(per_machine) * 10, "min")
    hours = (t.hour + t.minute / 60).to_numpy()
    for m in range(n_machines):
        # load follows the shift pattern (two shifts, quieter at night) plus slow random drift
        shift = np.where((hours >= 6) & (hours < 22), 0.75, 0.35)
        load = np.clip(shift + _ar1(rng, per_machine, 0.97, 0.03), 0.1, 1.0)
        ambient = 21 + 3 * np.sin(2 * np.pi * (hours - 9) / 24) + rng.normal(0, 0.4, per_machine)
        rpm = 900 + 900 * load + rng.normal(0, 25, per_machine)
        power = 4 + 26 * load ** 1.2 + rng.normal(0, 0.8, per_machine)
        temp = ambient + 8 + 32 * load + rng.normal(0, 1.2, per_machine)
        vib = (1.2 + 0.05 * m) + 1.6 * load + rng.gamma(4, 0.06, per_machine)
        pressure = 5.2 + 1.8 * load + rng.normal(0, 0.12, per_machine)
        humidity = 48 - 6 * np.sin(2 * np.pi * (hours - 9) / 24) + _ar1(rng, per_machine, 0.95, 0.8)
        fault = np.zeros(per_machine, dtype=np.int8)
        taken = np.zeros(per_machine, dtype=bool)
        kinds = rng.permutation(["overheat", "bearing", "pressure"])
        for kind in kinds[: rng.integers(1, 3) + 1]:
            for a, b in _episodes(rng, per_machine, int(rng.integers(5, 10)), 4, 10, taken):
                k = b - a
                ramp = np.linspace(0.35, 1.0, k)
                fault[a:b] = 1
                if kind == "overheat":  # cooling failure: temperature climbs, power rises a little
                    temp[a:b] += ramp * rng.uniform(14, 26)
                    power[a:b] += ramp * rng.uniform(1.5, 4.0)
                elif kind == "bearing":  # bearing wear: vibration drifts up, rpm gets unsteady
                    vib[a:b] *= 1 + ramp * rng.uniform(0.9, 1.8)
                    rpm[a:b] += rng.normal(0, 90, k)
                    temp[a:b] += ramp * rng.uniform(2, 6)
                else:  # leak: pressure drops while the machine works harder
                    pressure[a:b] -= ramp * rng.uniform(1.8, 3.0)
                    power[a:b] += ramp * rng.uniform(1.0, 3.0)
        frames.append(pd.DataFrame({
            "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S"),
            "machine_id": f"M{m + 1:02d}",
            "temperature_c": temp.round(2),
            "vibration_mm_s": vib.round(3),
            "pressure_bar": pressure.round(3),
            "rpm": rpm.round(1),
            "power_kw": power.round(2),
            "humidity_pct": np.clip(humidity, 5, 95).round(1),
            "is_fault": fault,
        }))
    df = pd.concat(frames).sort_values(["timestamp", "machine_id"], kind="stable").reset_index(drop=True)
    df.insert(0, "reading_id", np.arange(1, len(df) + 1))
    return df


# --------------------------------------------------------------------------- IT operations
def make_server_metrics(n_hosts: int = 10, per_host: int = 1000, seed: int = 23) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    t = START + pd.to_timedelta(np.arange(per_host) * 5, "min")  # ~3.5 days at 5-minute resolution
    hours = (t.hour + t.minute / 60).to_numpy()
    daily = 0.55 + 0.4 * np.sin(2 * np.pi * (hours - 9) / 24)  # peak mid-afternoon, trough at night
    for h in range(n_hosts):
        capacity = rng.uniform(300, 700)  # requests/s the host serves at full daily peak
        load = np.clip(daily * rng.uniform(0.85, 1.1) + _ar1(rng, per_host, 0.9, 0.04), 0.05, 1.2)
        rps = capacity * load * rng.lognormal(0, 0.05, per_host)
        cpu = 8 + 62 * load + rng.normal(0, 3, per_host)
        mem = rng.uniform(38, 55) + 6 * load + rng.normal(0, 1.5, per_host)
        disk = rng.gamma(2, 4, per_host) + 10 * load
        net_in = rps * rng.uniform(0.018, 0.025) * rng.lognormal(0, 0.08, per_host)
        net_out = rps * rng.uniform(0.08, 0.12) * rng.lognormal(0, 0.08, per_host)
        latency = 18 * rng.lognormal(0, 0.15, per_host) * (1 + 0.8 * load ** 3)
        errors = rng.beta(1.2, 600, per_host) * (1 + load)
        incident = np.zeros(per_host, dtype=np.int8)
        taken = np.zeros(per_host, dtype=bool)
        for kind in rng.permutation(["cpu", "leak", "flood"])[: rng.integers(1, 3) + 1]:
            for a, b in _episodes(rng, per_host, int(rng.integers(5, 9)), 3, 9, taken):
                k = b - a
                ramp = np.linspace(0.3, 1.0, k)
                incident[a:b] = 1
                if kind == "cpu":  # runaway process: CPU pinned, latency and errors spike
                    cpu[a:b] = np.clip(cpu[a:b] + ramp * rng.uniform(30, 55), 0, 100)
                    latency[a:b] *= 1 + ramp * rng.uniform(2, 6)
                    errors[a:b] += ramp * rng.uniform(0.01, 0.05)
                elif kind == "leak":  # memory leak: memory ramps to the ceiling, GC pauses add latency
                    mem[a:b] = np.clip(mem[a:b] + ramp * rng.uniform(30, 45), 0, 99.5)
                    latency[a:b] *= 1 + ramp * rng.uniform(0.5, 2.0)
                    disk[a:b] += ramp * rng.uniform(10, 40)  # swapping
                else:  # traffic flood: requests and inbound traffic jump, errors follow
                    boost = 1 + ramp * rng.uniform(2, 4)
                    rps[a:b] *= boost
                    net_in[a:b] *= boost * rng.uniform(1.5, 3)
                    net_out[a:b] *= 1 + (boost - 1) * 0.4
                    cpu[a:b] = np.clip(cpu[a:b] + ramp * rng.uniform(15, 30), 0, 100)
                    errors[a:b] += ramp * rng.uniform(0.02, 0.08)
        frames.append(pd.DataFrame({
            "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S"),
            "host": f"web-{h + 1:02d}",
            "cpu_pct": np.clip(cpu, 0, 100).round(1),
            "mem_pct": np.clip(mem, 0, 100).round(1),
            "disk_io_mb_s": disk.round(2),
            "net_in_mb_s": net_in.round(3),
            "net_out_mb_s": net_out.round(3),
            "latency_ms": latency.round(1),
            "error_rate": np.clip(errors, 0, 1).round(5),
            "requests_per_s": rps.round(1),
            "is_incident": incident,
        }))
    df = pd.concat(frames).sort_values(["timestamp", "host"], kind="stable").reset_index(drop=True)
    df.insert(0, "sample_id", np.arange(1, len(df) + 1))
    return df


DATASETS = {
    "transactions.csv": (make_transactions, "is_fraud"),
    "sensors.csv": (make_sensors, "is_fault"),
    "server_metrics.csv": (make_server_metrics, "is_incident"),
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (make, label) in DATASETS.items():
        df = make()
        path = args.out / name
        df.to_csv(path, index=False)
        size = path.stat().st_size / 1e6
        print(f"{path}: {len(df):,} rows x {df.shape[1]} columns, {label} = {df[label].mean():.2%}, {size:.2f} MB")


if __name__ == "__main__":
    main()
