"""The original report's loop in a scripting runtime: extract a small tar archive ITERATIONS
times per round into one directory, ROUNDS rounds, forcing a GC between rounds, and print
RSS after each round.

    sudo leakscope run --iteration-path out/a.txt -- python3 scripts/extract_loop.py [ROUNDS] [ITERATIONS]

Each extraction writes out/a.txt exactly once, so `--iteration-path out/a.txt` marks the
iterations exactly; automatic detection finds the same path. (The archive itself is no good
marker: tarfile opens it once per compression format it tries.)
"""
import gc
import io
import os
import sys
import tarfile
import tempfile


def build_archive(path):
    with tarfile.open(path, "w") as archive:
        for name, content in (("a.txt", b"hello"), ("b.txt", b"world")):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))


def rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    with tempfile.TemporaryDirectory() as work:
        archive = os.path.join(work, "loop-archive.tar")
        target = os.path.join(work, "out")
        build_archive(archive)
        for round_number in range(1, rounds + 1):
            for _ in range(iterations):
                with tarfile.open(archive) as opened:
                    opened.extractall(target, filter="data")
            gc.collect()
            print(f"Round {round_number}/{rounds}: RSS = {rss_mib():.1f} MiB", flush=True)


if __name__ == "__main__":
    main()
