"""Three training runs side by side on one GPU inside a fixed wall-clock budget (device session).

1. A short calibration: each run trains --cal-steps steps (all three at once) to measure its rate.
2. The real runs, each sized in whole epochs to fit the budget, so its cosine schedule completes.
3. best/ weights and the logs are copied to --out.

Data: LITEUNET_DATASETS=.devdata/datasets (packed by tools/pack_datasets.py). Run from the repo
root on the GPU machine: ``python3 tools/device_train.py --device cuda --total-s 540 --out $OUT``.
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ALL = ["crc", "bcdata", "bbbc039", "mbm", "vgg_cells", "adi", "dsb2018"]
COMMON = [
    "--augment", "generalist", "--scale-range", "0.7", "1.4", "--scale-prob", "0.35",
    "--normalize", "percentile", "--crop-sizes", "256", "--amp", "bf16", "--val-max-images", "20",
    "--no-progress",
]
RUNS = {
    # c8 -> c9: the candidates' recipe, continued
    "gen": dict(sets=ALL, extra=["--pretrained", "weights/candidates/generalist_c8", "--lr", "4e-4",
                                  "--sigma", "2", "bcdata=4", "--seed", "131"],
                spe=["600", "crc=1400", "bcdata=1200", "mbm=800", "dsb2018=800"], workers=6),
    # leave crc out, from random weights (every published weight saw crc)
    "loo_crc": dict(sets=[s for s in ALL if s != "crc"], extra=["--lr", "2e-3", "--sigma", "2", "bcdata=4",
                                                               "--seed", "137"],
                    spe=["600", "bcdata=1200", "mbm=1000", "bbbc039=800", "dsb2018=1000"], workers=4),
    # leave bcdata out, from random weights
    "loo_bcdata": dict(sets=[s for s in ALL if s != "bcdata"], extra=["--lr", "2e-3", "--sigma", "2",
                                                                      "--seed", "139"],
                       spe=["600", "crc=1400", "mbm=800", "dsb2018=800"], workers=4),
}


def command(run, out_dir, device, epochs, spe, val_max=None, time_limit=None):
    cmd = [sys.executable, "-m", "liteunet", "train", *run["sets"], "-o", str(out_dir), *COMMON, *run["extra"],
           "--samples-per-epoch", *spe, "--epochs", str(epochs), "--workers", str(run["workers"]),
           "--device", device, "--no-resume"]
    if val_max:
        cmd[cmd.index("--val-max-images") + 1] = str(val_max)
    if time_limit:
        cmd += ["--time-limit", f"{time_limit:.2f}"]
    return cmd


def launch(cmds, work, tag, deadline):
    procs, started, probed = {}, time.time(), False
    for name, cmd in cmds.items():
        log = open(work / f"{tag}_{name}.log", "w")
        log.write(" ".join(cmd) + "\n")
        log.flush()
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
    while any(p.poll() is None for p, _ in procs.values()):
        if time.time() > deadline:
            print(f"[{tag}] deadline: killing the runs still going", flush=True)
            for p, _ in procs.values():
                if p.poll() is None:
                    p.kill()
            break
        if tag == "main" and not probed and time.time() - started > 60:
            probed = True
            smi = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader"],
                                 capture_output=True, text=True).stdout.strip() if shutil.which("nvidia-smi") else "-"
            print(f"[main] at 60 s: GPU {smi}; load {os.getloadavg()}", flush=True)
        time.sleep(2)
    for p, log in procs.values():
        p.wait()
        log.close()
    return {name: p.returncode for name, (p, _) in procs.items()}


def rows(folder):
    path = Path(folder) / "log.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/out"))
    ap.add_argument("--work", default="/tmp/work")
    ap.add_argument("--total-s", type=float, default=530, help="wall clock for everything")
    ap.add_argument("--cal-crops", type=int, default=24, help="crops per set per calibration epoch")
    ap.add_argument("--val-s", type=float, default=15, help="allowance per validation")
    ap.add_argument("--smoke", action="store_true", help="tiny epochs (a CPU test of this script)")
    args = ap.parse_args()
    t0 = time.time()
    end = t0 + args.total_s
    os.environ.setdefault("LITEUNET_DATASETS", str(Path(".devdata/datasets").resolve()))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["PYTHONUNBUFFERED"] = "1"
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        for run in RUNS.values():
            run["spe"] = ["8"]
    print(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout if args.device != "cpu" else "cpu", flush=True)

    # 1. calibration: 3 short epochs each, all runs at once; the rate is read between the ends of
    # epochs 1 and 3, so it counts the per-epoch worker start but not the process start
    cal = {name: command(run, work / f"cal_{name}", args.device, 3, [str(args.cal_crops)], val_max=1)
           for name, run in RUNS.items()}
    codes = launch(cal, work, "cal", t0 + 0.3 * args.total_s)
    rate = {}
    for name in RUNS:
        r = rows(work / f"cal_{name}")
        if codes[name] != 0 or len(r) < 3:
            print(f"[cal] {name} failed (rc {codes[name]}, {len(r)} epochs):", flush=True)
            print((work / f"cal_{name}.log").read_text()[-3000:], flush=True)
            pack(work, out)
            sys.exit(1)
        steps = int(r[2]["step"]) - int(r[0]["step"])
        seconds = (float(r[2]["minutes"]) - float(r[0]["minutes"])) * 60
        rate[name] = steps / max(seconds, 1e-3)
        print(f"[cal] {name}: {steps} steps in {seconds:.1f} s -> {rate[name]:.2f} steps/s "
              f"(first epoch {float(r[0]['minutes']) * 60:.1f} s)", flush=True)

    # 2. the real runs: whole epochs that fit before the deadline (startup ~20 s, copy ~10 s)
    budget = end - time.time() - 45
    main_cmds = {}
    for name, run in RUNS.items():
        crops = sum(int(s.split("=")[1]) if "=" in s else 0 for s in run["spe"])
        default = int(next(s for s in run["spe"] if "=" not in s))
        named = {s.split("=")[0] for s in run["spe"] if "=" in s}
        crops += default * sum(1 for s in run["sets"] if s not in named)
        epoch_s = crops / 8 / rate[name] + args.val_s
        epochs = max(1, int(budget // epoch_s))
        print(f"[plan] {name}: {crops} crops/epoch, ~{epoch_s:.0f} s/epoch, {epochs} epochs in {budget:.0f} s",
              flush=True)
        main_cmds[name] = command(run, work / name, args.device, epochs, run["spe"],
                                  time_limit=budget / 60, val_max=1 if args.smoke else None)
    codes = launch(main_cmds, work, "main", end - 12)
    print(f"[main] return codes {codes}", flush=True)
    for name in RUNS:
        for row in rows(work / name):
            keys = [k for k in row if k.startswith("val/") and k.endswith("/f1@10")]
            print(f"[{name}] epoch {row['epoch']} step {row['step']} {float(row['minutes']):.2f} min loss "
                  f"{float(row['train_loss']):.5f} score {float(row['val/mean_score']):.3f} "
                  + " ".join(f"{k.split('/')[1]} {float(row[k]):.3f}" for k in keys), flush=True)
    pack(work, out)
    print(f"done in {time.time() - t0:.0f} s", flush=True)


def pack(work, out):
    for name in RUNS:
        best = work / name / "best"
        if (best / "model.safetensors").exists():
            (out / name).mkdir(exist_ok=True)
            for f in ("model.safetensors", "config.json"):
                shutil.copy2(best / f, out / name / f)
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for f in sorted(work.glob("*.log")):
            tar.add(f, arcname=f.name)
        for d in sorted(work.iterdir()):
            for f in ("log.csv", "log.jsonl", "config.json"):
                if (d / f).exists():
                    tar.add(d / f, arcname=f"{d.name}/{f}")


if __name__ == "__main__":
    main()
