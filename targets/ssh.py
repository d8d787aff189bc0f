"""Linux boards over SSH (Raspberry Pi, Coral Dev Board, Jetson, any Linux with Python).

The model and the self-contained runner (`targets/runner/litert_runner.py`)
are copied into a per-run directory made with `mktemp -d` (by SFTP, or with
`cat > path` over an exec channel when the board's sshd has no SFTP
subsystem, as on Dropbear and minimal images), the runner
is started with the board's Python (`python3` unless `python=` says
otherwise), its JSON line is read back, and the directory is removed with
`rm -rf` whatever happened. Every word sent to the remote shell goes through
`shlex.quote`.

Connection settings follow OpenSSH: `~/.ssh/config` (HostName, User, Port,
IdentityFile, UserKnownHostsFile, ConnectTimeout), keys and the SSH agent,
and host keys from `/etc/ssh/ssh_known_hosts` and `~/.ssh/known_hosts` (or the
`known_hosts=` file). A host key that is not known is refused unless
`trust_on_first_use=True` (`kit profile --trust-on-first-use`), which records
it; a host key that differs from the recorded one is always refused.
ProxyJump/ProxyCommand are not supported.

Energy: with a device profile whose energy method is `rpi5-pmic` and a
`vcgencmd` on the board, `vcgencmd pmic_read_adc` is read before the run and
then repeatedly while the runner runs (every `interval_s` of the profile,
default 0.05 s, plus the tool's own run time); see `targets.energy` for the
formula and its limits. The sampling runs on the board's CPU beside the
model. With `meter=PORT` (or energy method `serial-meter` with a `port`), an
external meter attached to the host is read during the run instead.

Tested against a real OpenSSH server on 127.0.0.1 whose "board" is this
machine (x86-64, ai_edge_litert): deploy/run/cleanup, host-key refusal and
trust-on-first-use, dropped and frozen connections, hostile file names, and
the PMIC flow with an emulated `vcgencmd` that prints the documented format.
Not run on a physical Raspberry Pi, Coral Dev Board or Jetson.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import logging
import os
import select
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.core.errors import TargetError
from targets.base import ArtifactRef, Deployment, DeviceInfo, ProfileResult, RunSettings, Target
from targets.energy import (PMIC_RUNNER_START, SerialPowerMeter, parse_pmic_log, pmic_exit_code, pmic_script,
                            runner_energy)
from targets.host_facts import BATTERY_SCRIPT, DF_COMMAND, parse_battery, parse_df
from targets.options import parse_options
from targets.profiles import DeviceProfile
from targets.runner import APIS, RUNNER, mark_emulated, parse_runner_output, runner_args, runner_result
from targets.uri import TargetURI

log = logging.getLogger(__name__)
# paramiko logs its transport thread's tracebacks; the errors raised here already carry the cause
logging.getLogger("paramiko").addHandler(logging.NullHandler())

_SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
_PID_PREFIX = "KITPID "


def host_key_fingerprint(key: Any) -> str:
    """OpenSSH's `SHA256:…` form, the one `ssh-keygen -lf` prints on the device."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass
class SSHOptions:
    """`--option KEY=VALUE` of SSH targets (and of `edgetpu+ssh://`, which runs over one)."""

    #: record an unknown host key instead of refusing it (`--trust-on-first-use`)
    trust_on_first_use: bool = False
    #: private key file; default: ~/.ssh/config's IdentityFile, then the agent and the usual keys
    identity: str | None = None
    #: the board's Python; default: the profile's `extra.python`, then python3
    python: str | None = None
    known_hosts: str | None = None
    ssh_config: str | None = None
    connect_timeout: float | None = field(default=None, metadata={"min": 0.1})
    #: seconds without traffic before the board is asked for a keepalive reply
    alive_interval: float = field(default=15.0, metadata={"min": 0.1})
    #: delegate library for `--delegate edgetpu` (set by the Edge TPU target)
    delegate_library: str | None = None
    vcgencmd: str = "vcgencmd"
    #: serial port of an external power meter on the host (`targets.energy`)
    meter: str | None = None
    meter_baud: int = field(default=115200, metadata={"min": 1})
    #: per-op times from LiteRT's own profiler on the board after the timed runs (`ProfileResult.op_profile`)
    op_profiling: bool = False
    #: interpreter = LiteRT's Interpreter API; compiled = its CompiledModel API on the CPU accelerator
    api: str = field(default="interpreter", metadata={"choices": APIS})


@dataclass
class CommandResult:
    """Exit code and output of one remote command."""

    rc: int
    stdout: str
    stderr: str


class _Lost(Exception):
    """The SSH connection went away; carries the cause for the user-facing error."""


class SSHTarget(Target):
    schemes = ("ssh",)

    def __init__(self, uri: TargetURI, profile: DeviceProfile | None = None, **options: Any):
        super().__init__(uri, profile)
        o = self.options = parse_options(SSHOptions, options, "ssh")
        if not uri.host:
            raise TargetError(f"target {uri.raw!r} names no host", "use ssh://user@host[:port]")
        extra = profile.extra if profile else {}
        self.trust_on_first_use = o.trust_on_first_use
        self.python = o.python or extra.get("python") or "python3"
        self.alive_interval = o.alive_interval
        self.delegate_library = o.delegate_library
        self.vcgencmd = o.vcgencmd
        self.meter = o.meter
        self.meter_baud = o.meter_baud
        cfg = self._ssh_config(o.ssh_config, uri.host)
        self.hostname = cfg.get("hostname", uri.host)
        self.port = uri.port or int(cfg.get("port", 22))
        self.user = uri.user or cfg.get("user") or getpass.getuser()
        if o.identity:
            self.identities = [os.path.expanduser(o.identity)]
            if not os.path.isfile(self.identities[0]):
                raise TargetError(f"identity file {o.identity} does not exist", "pass the path of an SSH private key")
        else:
            self.identities = [p for p in (os.path.expanduser(f) for f in cfg.get("identityfile", [])) if os.path.isfile(p)]
        config_known = (cfg.get("userknownhostsfile") or "").split()
        self.known_hosts = os.path.expanduser(o.known_hosts or (config_known[0] if config_known else "~/.ssh/known_hosts"))
        self.connect_timeout = float(o.connect_timeout or cfg.get("connecttimeout") or 15.0)
        self.where = f"{self.user}@{self.hostname}:{self.port}"
        self._client = None
        self._probe_cache: dict[str, Any] | None = None
        self._live_dirs: set[str] = set()
        #: whether the board's sshd has the SFTP subsystem (None: not tried yet)
        self._sftp: bool | None = None

    # -- connection ---------------------------------------------------------------------------------

    @staticmethod
    def _ssh_config(path: str | None, host: str) -> dict[str, Any]:
        import paramiko

        path = os.path.expanduser(path or "~/.ssh/config")
        if not os.path.isfile(path):
            return {}
        try:
            return dict(paramiko.SSHConfig.from_path(path).lookup(host))
        except Exception as e:  # paramiko raises several types for a bad config line
            raise TargetError(f"cannot read SSH config {path}: {e}") from None

    def _connect(self, timeout: float | None = None):
        if self._client is not None and self._client.get_transport() is not None \
                and self._client.get_transport().is_active():
            return self._client.get_transport()
        import paramiko

        self._drop_client()
        timeout = timeout or self.connect_timeout
        client = paramiko.SSHClient()
        try:
            if os.path.isfile(_SYSTEM_KNOWN_HOSTS):
                client.load_system_host_keys(_SYSTEM_KNOWN_HOSTS)
            if os.path.isfile(self.known_hosts):
                client.load_host_keys(self.known_hosts)
        except (OSError, paramiko.SSHException) as e:
            raise TargetError(f"cannot read known_hosts: {e}", f"fix or move {self.known_hosts}") from None
        client.set_missing_host_key_policy(_HostKeyPolicy(self.trust_on_first_use, self.known_hosts))
        try:
            client.connect(self.hostname, port=self.port, username=self.user, key_filename=self.identities or None,
                           allow_agent=True, look_for_keys=not self.identities, timeout=timeout,
                           banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout)
        except TargetError:
            client.close()
            raise
        except paramiko.BadHostKeyException as e:
            client.close()
            raise TargetError(
                f"the SSH host key of {self.hostname}:{self.port} has CHANGED: the server offered "
                f"{e.key.get_name()} {host_key_fingerprint(e.key)}, {self.known_hosts} records "
                f"{host_key_fingerprint(e.expected_key)}; refusing to connect (this can be a man-in-the-middle attack)",
                f"if the board was re-installed, check the new fingerprint on its console, then remove the old key "
                f"with: ssh-keygen -R '[{self.hostname}]:{self.port}' -f {self.known_hosts}") from None
        except (socket.timeout, TimeoutError) as e:
            client.close()
            raise TargetError(f"connecting to {self.where} timed out after {timeout:.0f} s ({e or 'no answer'})",
                              "check that the board is on and reachable") from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            transport = client.get_transport()
            # with key files paramiko reports a failed login as the last key-parsing error, so ask the transport
            refused = isinstance(e, paramiko.AuthenticationException) or (
                transport is not None and transport.is_active() and transport.auth_handler is not None
                and not transport.is_authenticated())
            stalled = transport is not None and not transport.initial_kex_done
            client.close()
            if stalled:  # paramiko's start_client gives up silently on a handshake timeout
                raise TargetError(f"{self.where} did not complete the SSH handshake within {timeout:.0f} s ({e})",
                                  "the board or its sshd may hang; check it on its console") from None
            if refused:
                raise TargetError(f"SSH authentication as {self.user} on {self.hostname}:{self.port} failed: {e}",
                                  "install your public key on the board (ssh-copy-id) or pass "
                                  "--option identity=KEYFILE") from None
            raise TargetError(f"cannot connect to {self.where}: {type(e).__name__}: {e}",
                              "check the host, the port and that sshd runs on the board") from None
        transport = client.get_transport()
        transport.set_keepalive(max(1, int(self.alive_interval)))
        self._client = client
        self._probe_cache = None
        return transport

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        self._drop_client()

    def _alive(self, transport, wait_s: float) -> bool:
        """Ask the server for a reply (like ServerAliveInterval); False when none comes in `wait_s`."""
        answered = threading.Event()

        def ask() -> None:
            try:
                transport.global_request("keepalive@openssh.com", wait=True)
            except Exception:  # a dead transport is what the caller is probing for
                pass
            finally:
                answered.set()

        threading.Thread(target=ask, name="ssh-keepalive", daemon=True).start()
        return answered.wait(wait_s) and transport.is_active()

    # -- remote commands ----------------------------------------------------------------------------

    def _exec(self, command: str, timeout: float, what: str, stdin: bytes | None = None) -> CommandResult:
        """Run one shell command; raise `_Lost` when the connection dies, TargetError on timeout."""
        transport = self._connect()
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin)
                chan.shutdown_write()
        except Exception as e:  # paramiko raises SSHException subclasses, OSError and EOFError here
            if not transport.is_active():
                raise _Lost(transport.get_exception() or e) from None
            raise TargetError(f"cannot start {what} on {self.where}: {e}") from None
        out, err = bytearray(), bytearray()
        start = last_traffic = time.monotonic()
        pid: int | None = None
        try:
            while True:
                got = False
                while chan.recv_ready():
                    out += chan.recv(65536)
                    got = True
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    got = True
                if pid is None:
                    pid = _read_pid(out)
                if (chan.closed or (chan.eof_received and chan.exit_status_ready())) \
                        and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                now = time.monotonic()
                if got:
                    last_traffic = now
                if not transport.is_active():
                    raise _Lost(transport.get_exception() or "the server closed the connection")
                if now - start > timeout:
                    self._kill_remote(pid)
                    raise TargetError(f"{what} on {self.where} took longer than {timeout:.0f} s",
                                      "raise --timeout or lower --runs; the remote process was killed")
                if now - last_traffic > self.alive_interval:
                    if not self._alive(transport, self.alive_interval):
                        raise _Lost(f"no answer to a keepalive for {self.alive_interval:.0f} s "
                                    "(the board hangs or the network is down)")
                    last_traffic = time.monotonic()
                select.select([chan], [], [], min(0.25, max(0.0, timeout - (now - start))))
        finally:
            chan.close()
        if chan.exit_status == -1 and not transport.is_active():
            raise _Lost(transport.get_exception() or "the server closed the connection")
        return CommandResult(chan.exit_status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def _kill_remote(self, pid: int | None) -> None:
        """Stop a timed-out run: the shell is a session leader, so its group holds the runner."""
        if pid is None:
            return
        try:
            self._exec(f"kill -KILL -- -{pid} 2>/dev/null || kill -KILL {pid} 2>/dev/null", 15, "stopping the run")
        except (TargetError, _Lost) as e:
            log.warning("could not stop process %s on %s: %s", pid, self.where, e)

    def _lost_error(self, what: str, cause: object) -> TargetError:
        self._drop_client()
        if self._live_dirs:
            dirs = " ".join(shlex.quote(d) for d in sorted(self._live_dirs))
            hint = (f"the remote temp dir {dirs} may remain on {self.hostname}; when the board is back, remove it "
                    f"with: rm -rf -- {dirs}")
        else:
            hint = "check that the board is powered and on the network, then retry"
        return TargetError(f"lost the SSH connection to {self.where} during {what}: {cause}", hint)

    def _run_checked(self, command: str, timeout: float, what: str, stdin: bytes | None = None) -> CommandResult:
        try:
            return self._exec(command, timeout, what, stdin)
        except _Lost as e:
            raise self._lost_error(what, e) from None

    def execute(self, argv: list[str], timeout: float = 60.0, what: str = "a command") -> CommandResult:
        """Run one program on the board; every argument is quoted, so none is read by the shell."""
        return self._run_checked(shlex.join(argv), timeout, what)

    def _probe(self) -> dict[str, Any]:
        """Which tools the board has, its OS name and board model; once per connection."""
        if self._probe_cache is None:
            tools = " ".join(shlex.quote(t) for t in ("taskset", self.vcgencmd))
            script = (f'for c in {tools}; do command -v "$c" >/dev/null 2>&1 && echo "has $c"; done; '
                      "sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null | tr -d '\"' | sed 's/^/os /'; "
                      "if [ -r /proc/device-tree/model ]; then printf 'board '; tr -d '\\000' </proc/device-tree/model; "
                      "echo; fi")
            res = self._run_checked(script, 30, "probing the board")
            probe: dict[str, Any] = {"tools": set()}
            for line in res.stdout.splitlines():
                key, _, value = line.partition(" ")
                if key == "has":
                    probe["tools"].add(value)
                elif key in ("os", "board") and value.strip():
                    probe[key] = value.strip()
            self._probe_cache = probe
        return self._probe_cache

    # -- Target interface ---------------------------------------------------------------------------

    def device_info(self) -> DeviceInfo:
        res = self._run_checked(f"{shlex.quote(self.python)} - --info", 60, "reading the device description",
                                stdin=RUNNER.read_bytes())
        self._check_python(res)
        d = parse_runner_output(res.stdout, res.stderr, where=self.where)["device"]
        info = DeviceInfo(name=d["name"], cpu=d["cpu"], os=d["os"], runtime=d["runtime"],
                          runtime_version=d["runtime_version"], extra={"ssh": self.where})
        self._describe(info)
        return info

    def _describe(self, info: DeviceInfo) -> None:
        probe = self._probe()
        if probe.get("os"):
            info.os = f"{probe['os']} ({info.os})" if info.os else probe["os"]
        if probe.get("board"):
            info.extra["board"] = probe["board"]
        info.extra["ssh"] = self.where

    def _check_python(self, res: CommandResult) -> None:
        if res.rc == 127:
            raise TargetError(f"{self.python} was not found on {self.where}",
                              "install python3 with numpy and ai-edge-litert (or tflite-runtime) on the board, "
                              "or pass --option python=/path/to/python3")

    def health(self) -> dict[str, Any]:
        return {**super().health(), "ssh": self.where, **self.board_health()}

    def board_health(self) -> dict[str, Any]:
        """Free space in /tmp, where runs are deployed, and the board's battery if it has one."""
        df = self.execute(DF_COMMAND, timeout=20, what="reading free storage")
        battery = self.execute(["sh", "-c", BATTERY_SCRIPT], timeout=20, what="reading the battery")
        level, charging = parse_battery(battery.stdout)
        return {"free_storage_bytes": parse_df(df.stdout), "battery_level": level, "charging": charging}

    def deploy(self, artifact: Path) -> Deployment:
        if not artifact.is_file():
            raise TargetError(f"model file {artifact} does not exist")
        ref = ArtifactRef.of(artifact)
        res = self._run_checked('mktemp -d "${TMPDIR:-/tmp}/kit-ssh.XXXXXXXX"', 30, "creating the run directory")
        path = res.stdout.strip()
        if res.rc != 0 or not path.startswith("/") or "\n" in path:
            raise TargetError(f"could not create a temporary directory on {self.where}: "
                              f"{(res.stderr or res.stdout).strip()[-300:]}", "check that /tmp is writable on the board")
        self._live_dirs.add(path)
        deployment = Deployment(artifact=ref, location=path,
                                state={"model": f"{path}/{artifact.name}", "runner": f"{path}/{RUNNER.name}"})
        try:
            self._upload([(artifact, deployment.state["model"], "the model"),
                          (RUNNER, deployment.state["runner"], "the runner")])
        except BaseException:
            self.cleanup(deployment)
            raise
        return deployment

    def _upload(self, files: list[tuple[Path, str, str]]) -> None:
        """Copy (local path, remote path, what) triples: over one SFTP session when the board's sshd has the
        SFTP subsystem, else through `cat > path` on an exec channel (boards built without sftp-server)."""
        if self._sftp is not False:
            sftp = self._open_sftp()
            if sftp is not None:
                self._sftp = True
                return self._sftp_put(sftp, files)
            self._sftp = False
            log.info("%s offers no SFTP subsystem; copying files over the exec channel", self.where)
        for local, remote, what in files:
            self._exec_put(local, remote, what)

    def _open_sftp(self):
        """An SFTP client, or None when the server refuses the subsystem (the connection itself is fine)."""
        import paramiko

        transport = self._connect()
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
        except Exception as e:  # paramiko: SSHException "Channel closed." / EOFError when there is no subsystem
            if not transport.is_active():
                raise self._lost_error("opening SFTP", transport.get_exception() or e) from None
            return None
        if sftp is None:
            return None
        sftp.get_channel().settimeout(max(self.connect_timeout, 60.0))
        return sftp

    def _sftp_put(self, sftp, files: list[tuple[Path, str, str]]) -> None:
        transport = self._connect()
        what, remote, local = "", "", None
        try:
            try:
                for local, remote, what in files:
                    sftp.put(str(local), remote, confirm=True)
            finally:
                sftp.close()
        except Exception as e:  # SFTP errors are IOError/SSHException/EOFError depending on where it broke
            if not transport.is_active():
                raise self._lost_error(f"copying {what or 'files'}", transport.get_exception() or e) from None
            raise TargetError(f"copying {what or 'files'} to {self.where}:{remote} over SFTP failed: {e}",
                              self._copy_hint(remote, local)) from None

    def _exec_put(self, local: Path, remote: str, what: str) -> None:
        data = local.read_bytes()
        quoted = shlex.quote(remote)
        res = self._run_checked(f"cat > {quoted} && wc -c < {quoted}", max(60.0, self.connect_timeout),
                                f"copying {what}", stdin=data)
        written = res.stdout.strip()
        if res.rc != 0 or written != str(len(data)):
            cause = (res.stderr.strip().splitlines() or [f"cat exited with {res.rc}"])[-1]
            if res.rc == 0:
                cause = f"{written or 'no'} of {len(data)} bytes arrived"
            raise TargetError(f"copying {what} to {self.where}:{remote} through `cat` failed: {cause}",
                              self._copy_hint(remote, local))

    def _copy_hint(self, remote: str, local: Path | None) -> str:
        """Name the likely cause from what the board says about the folder: full, read-only or missing."""
        folder = remote.rsplit("/", 1)[0] or "/"
        try:
            res = self.execute(["df", "-Pk", folder], timeout=20, what="reading free space")
            free = parse_df(res.stdout) if res.rc == 0 else None
            writable = self._run_checked(f"test -w {shlex.quote(folder)}", 20, "checking the folder").rc == 0
        except TargetError:
            return "the board stopped answering while the copy failed; check it and retry"
        size = local.stat().st_size if local is not None and local.is_file() else None
        if free is not None and size is not None and free < size:
            return f"{folder} on the board has {free:,} bytes free and the file needs {size:,}: free space there"
        if not writable:
            return f"{folder} is not writable for {self.user} on the board (or does not exist)"
        room = f"{free:,} bytes free in {folder}" if free is not None else "free space unknown"
        return f"the board reported the error above ({room}); check its sshd log"

    def run(self, deployment: Deployment, settings: RunSettings) -> dict[str, Any]:
        if settings.delegate in ("gpu", "nnapi"):
            raise TargetError(f"delegate {settings.delegate!r} is not available through the Python runtime on {self.where}",
                              "use default, none or xnnpack over SSH; GPU and NNAPI are Android delegates")
        if settings.delegate == "edgetpu" and not self.delegate_library:
            raise TargetError("the Edge TPU delegate needs the edgetpu target", "use --target edgetpu+ssh://…")
        library = self.delegate_library if settings.delegate == "edgetpu" else None
        remote_input = None
        if settings.input_path:
            remote_input = f"{deployment.location}/input.npy"
            self._upload([(Path(settings.input_path), remote_input, "the input batch")])
        args = runner_args(deployment.state["model"], settings, delegate_library=library, input_path=remote_input,
                           op_profiling=self.options.op_profiling, api=self.options.api)
        cmd = [self.python, deployment.state["runner"], *args]
        if settings.core_mask:
            if "taskset" not in self._probe()["tools"]:
                raise TargetError(f"a core mask was given but `taskset` is not installed on {self.where}",
                                  "install util-linux on the board or drop --core-mask")
            cmd = ["taskset", settings.core_mask, *cmd]
        plan = self._energy_plan()
        if plan["method"] == "rpi5-pmic":
            return self._run_with_pmic(deployment, cmd, settings, plan)
        meter = SerialPowerMeter(plan["port"], plan["baud"]) if plan["method"] == "serial-meter" else None
        if meter:
            meter.start()
        try:
            res = self._run_checked(f"echo {_PID_PREFIX}$$; exec {shlex.join(cmd)}", settings.timeout_s,
                                    f"the run of {deployment.artifact.path}")
        finally:
            ended = time.monotonic()
            samples = meter.stop() if meter else []
        self._check_python(res)
        text = _strip_pid(res.stdout)
        raw = {"result": parse_runner_output(text, res.stderr, where=self.where), "text": text + res.stderr}
        if meter:
            raw["energy"] = {"method": "serial-meter", "samples": samples, "end": ended,
                             "note": meter.problems(), "port": meter.port}
        else:
            raw["energy"] = {"method": None, "note": plan["note"]}
        return raw

    def _energy_plan(self) -> dict[str, Any]:
        """How this run measures energy: {"method": "rpi5-pmic"|"serial-meter", …} or {"method": None, "note": why not}."""
        energy = dict(self.profile_spec.energy) if self.profile_spec else {"method": "none"}
        if self.meter:
            energy = {"method": "serial-meter", "port": self.meter, "baud": self.meter_baud}
        method = energy.get("method", "none")
        if method == "serial-meter":
            if not energy.get("port"):
                return {"method": None, "note": "the profile's serial-meter names no port: pass --option meter=PORT"}
            return {"method": method, "port": energy["port"], "baud": int(energy.get("baud", self.meter_baud))}
        if method == "rpi5-pmic":
            if self.vcgencmd in self._probe()["tools"]:
                return {"method": method, "interval_s": float(energy.get("interval_s", 0.05)),
                        "min_samples": int(energy.get("min_samples", 5))}
            return {"method": None, "note": f"`{self.vcgencmd}` is not installed on {self.where}: no PMIC readings "
                    "(rpi5-pmic needs a Raspberry Pi 5 with vcgencmd; or pass --option vcgencmd=PATH)"}
        default = "the device profile names no energy method" if method == "none" else \
            f"energy method {method!r} is not available over SSH"
        return {"method": None, "note": energy.get("note") or default}

    def _run_with_pmic(self, deployment: Deployment, cmd: list[str], settings: RunSettings,
                       plan: dict[str, Any]) -> dict[str, Any]:
        interval = plan["interval_s"]
        script = f"echo {_PID_PREFIX}$$\n" + pmic_script(self.vcgencmd, cmd, deployment.location, interval)
        res = self._run_checked(script, settings.timeout_s, f"the run of {deployment.artifact.path}")
        log_text, _, runner_text = _strip_pid(res.stdout).partition(PMIC_RUNNER_START + "\n")
        self._check_python(CommandResult(pmic_exit_code(log_text), "", ""))
        raw = {"result": parse_runner_output(runner_text, res.stderr, where=self.where),
               "text": runner_text + res.stderr}
        raw["energy"] = {"method": "rpi5-pmic", "min_samples": plan["min_samples"], **parse_pmic_log(log_text)}
        return raw

    def collect(self, deployment: Deployment, raw: dict[str, Any], settings: RunSettings) -> ProfileResult:
        result = runner_result(self.uri.raw, deployment.artifact, settings, raw["result"], raw["text"],
                               memory_method="peak RSS of the runner process on the device (getrusage)")
        self._describe(result.device)
        result.notes.append(f"ran in {deployment.location} on {self.where}, removed afterwards")
        reading = runner_energy(raw["energy"], raw["result"]["samples_us"])
        result.energy_uj_per_inference = reading.uj_per_inference
        result.energy_method = reading.method
        result.energy_note = reading.note
        emulated = self.profile_spec.extra.get("emulated") if self.profile_spec else None
        return mark_emulated(result, str(emulated)) if emulated else result

    def cleanup(self, deployment: Deployment) -> None:
        path = deployment.location
        if path not in self._live_dirs:
            return
        try:
            if self._client is None or not self._client.get_transport() or not self._client.get_transport().is_active():
                self._connect(timeout=min(5.0, self.connect_timeout))  # one quick try after a lost connection
            res = self._exec(f"rm -rf -- {shlex.quote(path)}", 30, "removing the run directory")
            if res.rc != 0:
                raise TargetError(res.stderr.strip() or f"rm exited with {res.rc}")
            self._live_dirs.discard(path)
        except (TargetError, _Lost) as e:
            log.warning("could not remove %s on %s (%s): remove it by hand with rm -rf -- %s",
                        path, self.where, getattr(e, "message", e), shlex.quote(path))


class _HostKeyPolicy:
    """Refuse unknown host keys, or record them when the user asked for trust-on-first-use."""

    def __init__(self, trust: bool, known_hosts: str):
        self.trust = trust
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname: str, key) -> None:
        fingerprint = host_key_fingerprint(key)
        if not self.trust:
            raise TargetError(
                f"unknown SSH host key for {hostname}: {key.get_name()} {fingerprint}; refusing to connect",
                f"compare it with `ssh-keygen -lf /etc/ssh/ssh_host_{_key_file_kind(key)}_key.pub` on the board, "
                f"then pass --trust-on-first-use to accept it and record it in {self.known_hosts}")
        path = Path(self.known_hosts)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        except OSError as e:
            raise TargetError(f"cannot record the host key of {hostname} in {path}: {e}") from None
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning("trusted new SSH host key for %s: %s %s (recorded in %s)", hostname, key.get_name(), fingerprint, path)


def _key_file_kind(key) -> str:
    name = key.get_name()
    return "ed25519" if "ed25519" in name else "ecdsa" if "ecdsa" in name else "rsa"


def _read_pid(out: bytearray) -> int | None:
    head = bytes(out[:64])
    if head.startswith(_PID_PREFIX.encode()) and b"\n" in head:
        value = head[len(_PID_PREFIX):head.index(b"\n")]
        return int(value) if value.isdigit() else None
    return None


def _strip_pid(text: str) -> str:
    if text.startswith(_PID_PREFIX):
        return text.split("\n", 1)[1] if "\n" in text else ""
    return text
