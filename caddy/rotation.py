"""Generated Caddy 2.11 access entries and the ways a log file is rotated, for
caddy/e2e_agent_file.py. Python standard library only.

Entries have the shape real Caddy 2.11.7 writes (caddy/FORMAT.md, caddy/testdata/access.log):
one JSON object a line, keyed with X-Subscription-Key, each with its own path `/<prefix>/<n>`
so that the collector's events can be counted per entry.

Rotations, as the tools do them:
- `lumberjack_roll` (Caddy's `output file`): rename `access.log` to
  `access-2026-12-06T05-07-19.123-size.log` (Caddy 2.11.7's name for a roll at roll_size, as the
  real binary writes it; lumberjack's classic `access-<time>.log` with `suffix=""`), open a new
  `access.log`, then, unless
  `roll_uncompressed`, write `….log.gz` and remove the plain file;
- `logrotate_roll`: shift `access.log.N` to `N+1` (`delaycompress`: `.2` and older gzipped),
  `access.log` to `access.log.1`, a new `access.log`; or with `dateext`,
  `access.log` to `access.log-<date>`;
- `copytruncate`: copy `access.log` to a rolled name, then truncate it in place.
"""
import datetime
import gzip
import os
import re
import shutil
import threading
import time

# A 1 MiB roll, as Caddy's `roll_size 1MiB`.
MIB = 1 << 20


def entry(prefix, n, ts=None):
    """One Caddy 2.11 access entry (a line, with its newline) for GET /<prefix>/<n>."""
    ts = time.time() if ts is None else ts
    return ('{"level":"info","ts":%.7f,"logger":"http.log.access.log0","msg":"handled request",'
            '"request":{"remote_ip":"127.0.0.1","remote_port":"%d","client_ip":"127.0.0.1",'
            '"proto":"HTTP/1.1","method":"GET","host":"api.example.com","uri":"/%s/%d?page=2",'
            '"headers":{"User-Agent":["curl/8.5.0"],"Accept-Encoding":["identity"],'
            '"X-Subscription-Key":["key-%d"]}},"bytes_read":0,"user_id":"","duration":0.%06d,'
            '"size":%d,"status":200,"resp_headers":{"Server":["Caddy"],'
            '"Content-Type":["application/json"],"Via":["1.1 Caddy"]}}\n'
            % (ts, 30000 + n % 30000, prefix, n, n % 7, 1000 + n % 900000, 10 + n % 5000))


# The shortest line `entry` makes (for a bound: unread bytes / this = at most so many entries).
MIN_ENTRY = len(entry("g", 0, 1e9))


def entries(prefix, start, count):
    ts = time.time()
    return "".join(entry(prefix, n, ts) for n in range(start, start + count)).encode()


def append(path, data):
    """One O_APPEND write, as Caddy writes an entry; the file is created 0600 if missing."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def gzip_file(src, dst):
    with open(src, "rb") as f, gzip.open(dst, "wb", compresslevel=6) as g:
        shutil.copyfileobj(f, g)


_last_stamp = [0.0]


def lumberjack_roll(log, compress, suffix="-size"):
    """Caddy's rolling (lumberjack): `access.log` → `access-<UTC time, ms><suffix>.log`, a new empty
    `access.log`; with `compress`, `….log.gz` is written and the plain one removed. Returns
    the rolled file's final path."""
    stamp = max(time.time(), _last_stamp[0] + 0.001)
    _last_stamp[0] = stamp
    d = datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc)
    stem, ext = os.path.splitext(log)
    rolled = f"{stem}-{d.strftime('%Y-%m-%dT%H-%M-%S')}.{d.microsecond // 1000:03d}{suffix}{ext}"
    os.rename(log, rolled)
    os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    if not compress:
        return rolled
    gzip_file(rolled, rolled + ".gz")
    os.remove(rolled)
    return rolled + ".gz"


def logrotate_roll(log, delaycompress=True, dateext=None):
    """logrotate's `create` rotation. Numbered: every `log.N[.gz]` moves to N+1 (with
    `delaycompress`, `.2` and older are gzipped; without it nothing is), `log` → `log.1`, a new empty `log`. With
    `dateext` (a string such as "20261206"): `log` → `log-<dateext>`. Returns the new name
    of the file that was `log`."""
    if dateext:
        rolled = f"{log}-{dateext}"
        os.rename(log, rolled)
    else:
        numbered = []
        for name in os.listdir(os.path.dirname(log)):
            m = re.fullmatch(re.escape(os.path.basename(log)) + r"\.(\d+)(\.gz)?", name)
            if m:
                numbered.append((int(m.group(1)), bool(m.group(2))))
        for n, gz in sorted(numbered, reverse=True):
            src = f"{log}.{n}" + (".gz" if gz else "")
            if not gz and delaycompress and n + 1 >= 2:
                gzip_file(src, f"{log}.{n + 1}.gz")
                os.remove(src)
            else:
                os.rename(src, f"{log}.{n + 1}" + (".gz" if gz else ""))
        rolled = f"{log}.1"
        os.rename(log, rolled)
    os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    return rolled


def copytruncate(log, dest=None):
    """logrotate's `copytruncate`: `log` copied to `dest` (default `log.1`), then truncated
    to 0 in place (the writer keeps appending to the same inode)."""
    dest = dest or f"{log}.1"
    shutil.copyfile(log, dest)
    os.truncate(log, 0)
    return dest


class Writer:
    """Writes generated entries /<prefix>/0, 1, … to `log`, rolling it Caddy's way before a
    write would take it past `roll_bytes` (compressed unless `uncompressed`). `write(n)` writes
    n now; `start(rate, total)` writes `total` at `rate` entries/s in a thread. `count` is how
    many were written, `history` (time, count) after each write, `rolled` the rolled files."""

    def __init__(self, log, prefix, roll_bytes=None, uncompressed=False, suffix="-size"):
        self.log, self.prefix, self.roll_bytes, self.uncompressed = log, prefix, roll_bytes, uncompressed
        self.suffix = suffix
        self.count = 0
        self.history = [(time.time(), 0)]
        self.rolled = []
        self.lock = threading.Lock()
        self.thread = None
        self.error = None

    def write(self, n, chunk=200):
        with self.lock:
            while n > 0:
                k = min(n, chunk)
                data = entries(self.prefix, self.count, k)
                if self.roll_bytes and os.path.exists(self.log):
                    size = os.path.getsize(self.log)
                    if size and size + len(data) > self.roll_bytes:
                        self.rolled.append(lumberjack_roll(self.log, compress=not self.uncompressed,
                                                           suffix=self.suffix))
                append(self.log, data)
                self.count += k
                self.history.append((time.time(), self.count))
                n -= k

    def written_since(self, t):
        """Entries written after time t (at most)."""
        before = max((c for (w, c) in self.history if w <= t), default=0)
        return self.count - before

    def start(self, rate, total, chunk=200):
        def run():
            try:
                t0 = time.time()
                done = 0
                while done < total:
                    k = min(chunk, total - done)
                    self.write(k, chunk)
                    done += k
                    ahead = t0 + done / rate - time.time()
                    if ahead > 0:
                        time.sleep(ahead)  # pace: the writer's rate
            except BaseException as e:  # noqa: BLE001  (reported by join)
                self.error = e
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout=120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the writer did not finish"
        if self.error:
            raise self.error

    def paths(self):
        return {f"/{self.prefix}/{n}" for n in range(self.count)}
