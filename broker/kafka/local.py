"""A single-node Apache Kafka broker for a laptop and for the tests, run from Maven Central jars.

``respublica kafka start`` fetches the broker's jars once (``deploy/kafka/pom.xml`` through
``mvn dependency:copy-dependencies``) into a cache outside git, formats KRaft storage on the
first start, launches ``kafka.Kafka`` in the background with a pid file and a log file, and
waits until the broker it launched answers: the process must be alive and the cluster that
answers on the port must carry the cluster id this data dir was formatted with (another
process may take the port between the free-port check and the launch; its broker is never
taken for ours). Nothing here runs when ``KAFKA_BOOTSTRAP`` is set: then the user's own
cluster is used.

The broker is secure by default (``deploy/kafka/listeners-secure.properties``): one TLS
listener with a certificate from a CA made for this data dir (``broker.kafka.tls``), SASL/
SCRAM-SHA-512 users created when the storage is formatted (``SERVICE_USERS``), the
StandardAuthorizer with ``allow.everyone.if.no.acl.found=false`` and only ``admin`` as a
super-user. Each user's client config (a ``--kafka-config`` file: bootstrap, CA, username,
password) is written to ``<data dir>/clients/<user>.yaml``, mode 0600. ``insecure=True``
(``--insecure``) runs the old PLAINTEXT broker without authentication or authorizer. A data dir
keeps the mode it was formatted with (``security`` file): switching needs a new data dir.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from broker.deadline import Deadline
from broker.kafka.defaults import DEFAULT_PORT, KAFKA_VERSION, cache_root, default_data_dir
from broker.kafka.settings import KafkaSettings, configured_elsewhere
from broker.kafka.tls import LocalTls, write_private
from broker.kafka.users import write_client_config
from contracts.errors import RespublicaError

MIN_JAVA = 17
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
LOG_TAIL_LINES = 30
ADMIN = "admin"
SERVICE_USERS = (ADMIN, "respublica-ingest", "respublica-auditor")
"""SCRAM users created when the storage is formatted (contract principals: ``respublica users``)."""
SCRAM = "SCRAM-SHA-512"


class KafkaLocalError(RespublicaError):
    """The local broker could not be prepared, started or stopped."""


@dataclass(frozen=True)
class LocalKafkaConfig:
    """Where and how to run the local broker."""

    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    kafka_version: str = KAFKA_VERSION
    java: str = "java"
    mvn: str = "mvn"
    heap: str = "512m"
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 20.0
    insecure: bool = False

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def libs_dir(self) -> Path:
        return cache_root() / "kafka" / self.kafka_version / "libs"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def console_log(self) -> Path:
        return self.log_dir / "console.log"

    @property
    def tls(self) -> LocalTls:
        return LocalTls(self.data_dir / "tls")

    @property
    def clients_dir(self) -> Path:
        return self.data_dir / "clients"

    def client_config(self, user: str = ADMIN) -> Path:
        """The ``--kafka-config`` file of one of the ``SERVICE_USERS``."""
        return self.clients_dir / f"{user}.yaml"

    @property
    def security_file(self) -> Path:
        return self.data_dir / "security"


@dataclass(frozen=True)
class BrokerStatus:
    """What ``respublica kafka status`` reports."""

    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    client_config: Path | None = None
    """The admin's ``--kafka-config`` file (None for an insecure broker)."""

    def describe(self) -> str:
        if not self.running:
            return f"not running (data dir {self.data_dir})"
        text = f"running: pid {self.pid}, bootstrap {self.bootstrap}, data {self.data_dir}"
        if self.client_config is None:
            return text + ", INSECURE (plaintext, no authentication, no authorizer)"
        return text + f", TLS + SCRAM + authorizer; client configs in {self.client_config.parent}"


class LocalKafka:
    """Start, stop and inspect one local broker described by a :class:`LocalKafkaConfig`."""

    def __init__(
        self,
        config: LocalKafkaConfig,
        *,
        cluster_probe: Callable[[str, float], str | None] | None = None,
    ) -> None:
        self.config = config
        # (bootstrap, timeout) -> id of the cluster answering there, None if none answers.
        self._cluster_probe = cluster_probe or (
            lambda bootstrap, timeout: answering_cluster_id(
                self._probe_settings(bootstrap), timeout
            )
        )

    # -- prerequisites -------------------------------------------------------------------
    def check_java(self) -> None:
        """Fail with a specific message when Java is missing or older than 17."""
        java = shutil.which(self.config.java)
        if java is None:
            msg = (
                f"'{self.config.java}' not found on PATH: the local broker needs Java "
                f"{MIN_JAVA}+ (e.g. apt-get install openjdk-17-jre-headless), "
                "or set KAFKA_BOOTSTRAP to use an existing cluster"
            )
            raise KafkaLocalError(msg)
        major = java_major_version(java)
        if major < MIN_JAVA:
            msg = f"Java {major} found at {java}, but Kafka 4 needs Java {MIN_JAVA} or newer"
            raise KafkaLocalError(msg)

    def ensure_jars(self) -> Path:
        """Fetch the broker jars once; later calls reuse the cache."""
        libs = self.config.libs_dir
        if (libs / ".complete").exists():
            return libs
        mvn = shutil.which(self.config.mvn)
        if mvn is None:
            msg = (
                f"'{self.config.mvn}' (Maven) not found on PATH: it is needed once to fetch "
                f"the Kafka {self.config.kafka_version} jars into {libs} "
                "(apt-get install maven), or set KAFKA_BOOTSTRAP"
            )
            raise KafkaLocalError(msg)
        staging = libs.with_name(libs.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self._copy_dependencies(mvn, staging)
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        (libs / ".complete").write_text(self.config.kafka_version + "\n")
        return libs

    def _copy_dependencies(self, mvn: str, out: Path) -> None:
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(DEPLOY_DIR / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={out}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={self.config.kafka_version}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode != 0 or not any(out.glob("kafka_2.13-*.jar")):
            shutil.rmtree(out, ignore_errors=True)
            tail = tail_lines(proc.stdout + proc.stderr, 15)
            msg = (
                f"could not fetch the Kafka {self.config.kafka_version} jars from Maven "
                f"Central (mvn exit {proc.returncode}):\n{tail}"
            )
            raise KafkaLocalError(msg)

    # -- lifecycle -----------------------------------------------------------------------
    def status(self) -> BrokerStatus:
        pid = self._live_pid()
        cfg = self.config
        config = None if cfg.insecure else cfg.client_config()
        return BrokerStatus(pid is not None, pid, cfg.bootstrap, cfg.data_dir, config)

    def settings(self, user: str = ADMIN) -> KafkaSettings:
        """How ``user`` (one of ``SERVICE_USERS``) reaches this broker: its client config, or
        the bare address of an insecure broker."""
        if self.config.insecure:
            return KafkaSettings(bootstrap=self.config.bootstrap)
        return KafkaSettings.from_file(self.config.client_config(user))

    def _probe_settings(self, bootstrap: str) -> KafkaSettings | str:
        # Never the environment's settings: they may name another cluster's credentials.
        if self.config.insecure:
            return KafkaSettings(bootstrap=bootstrap)
        if not self.config.client_config().exists():
            return bootstrap
        return self.settings()

    def start(self) -> tuple[bool, BrokerStatus]:
        """Start the broker; returns (started_now, status). Idempotent."""
        current = self.status()
        if current.running:
            return False, current
        self.check_java()
        self._check_ports()
        libs = self.ensure_jars()
        self._prepare_security()
        properties = self._write_properties()
        cluster_id = self._format_storage(libs, properties)
        proc = self._launch(libs, properties)
        self._wait_ready(proc, cluster_id)
        return True, self.status()

    def stop(self) -> bool:
        """Stop the broker by pid (TERM, then KILL); returns whether one was running."""
        pid = self._live_pid()
        if pid is None:
            self.config.pid_file.unlink(missing_ok=True)
            return False
        terminate(pid, self.config.stop_timeout_s)
        self.config.pid_file.unlink(missing_ok=True)
        return True

    # -- internals -----------------------------------------------------------------------
    def _check_ports(self) -> None:
        for port in (self.config.port, self.config.controller_port):
            if port_in_use(port):
                msg = (
                    f"port {port} on 127.0.0.1 is already in use by another process; "
                    "choose another with --port, or stop that process"
                )
                raise KafkaLocalError(msg)

    def _live_pid(self) -> int | None:
        try:
            pid = int(self.config.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def _prepare_security(self) -> None:
        """Check the data dir's mode; on a secure first start make the CA, the broker's
        certificate and a password and client config for every service user."""
        cfg = self.config
        mode = "insecure" if cfg.insecure else "secure"
        if cfg.security_file.exists():
            formatted = cfg.security_file.read_text().strip()
            if formatted != mode:
                msg = (
                    f"the data dir {cfg.data_dir} was formatted {formatted}; it cannot be "
                    f"started {mode}: use another --data-dir"
                    + (" or add --insecure" if formatted == "insecure" else "")
                )
                raise KafkaLocalError(msg)
        elif (cfg.data_dir / "storage" / "meta.properties").exists():
            if not cfg.insecure:  # formatted before brokers were secure by default
                msg = (
                    f"the data dir {cfg.data_dir} holds a broker formatted without security; "
                    "start it with --insecure, or use another --data-dir"
                )
                raise KafkaLocalError(msg)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        cfg.data_dir.chmod(0o700)
        if cfg.insecure:
            return
        cfg.tls.create()
        cfg.clients_dir.mkdir(exist_ok=True)
        cfg.clients_dir.chmod(0o700)
        for user in SERVICE_USERS:
            if not cfg.client_config(user).exists():
                _write_client_config(cfg, user, secrets.token_urlsafe(24))

    def _write_properties(self) -> Path:
        cfg = self.config
        listeners = "listeners-plaintext" if cfg.insecure else "listeners-secure"
        template = (DEPLOY_DIR / "server.properties").read_text()
        template += (DEPLOY_DIR / f"{listeners}.properties").read_text()
        values = {
            "{port}": str(cfg.port),
            "{controller_port}": str(cfg.controller_port),
            "{log_dirs}": str(cfg.data_dir / "storage"),
            "{tls_dir}": str(cfg.tls.folder),
        }
        if not cfg.insecure:
            values["{admin_password}"] = self._password(ADMIN)
        for placeholder, value in values.items():
            template = template.replace(placeholder, value)
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        path = cfg.data_dir / "server.properties"
        write_private(path, template.encode())
        return path

    def _password(self, user: str) -> str:
        password = self.settings(user).password
        assert password is not None  # noqa: S101 - every client config written here has one
        return password.get_secret_value()

    def _format_storage(self, libs: Path, properties: Path) -> str:
        """Format the storage once; returns its cluster id (from ``meta.properties``)."""
        meta = self.config.data_dir / "storage" / "meta.properties"
        if meta.exists():
            return formatted_cluster_id(meta)
        cluster_id = new_cluster_id()
        cmd = [
            self.config.java,
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(properties),
        ]
        if not self.config.insecure:
            for user in SERVICE_USERS:
                cmd += ["--add-scram", f"{SCRAM}=[name={user},password={self._password(user)}]"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode != 0:
            tail = _without_secrets(tail_lines(proc.stdout + proc.stderr, 15))
            msg = f"formatting Kafka storage in {self.config.data_dir} failed:\n{tail}"
            raise KafkaLocalError(msg)
        self.config.security_file.write_text("insecure\n" if self.config.insecure else "secure\n")
        return cluster_id

    def _launch(self, libs: Path, properties: Path) -> subprocess.Popen[bytes]:
        cfg = self.config
        cmd = [
            cfg.java,
            f"-Xmx{cfg.heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={cfg.log_dir}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(properties),
        ]
        with cfg.console_log.open("ab") as console:
            proc = subprocess.Popen(  # noqa: S603
                cmd,
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        cfg.pid_file.write_text(f"{proc.pid}\n")
        return proc

    def _wait_ready(self, proc: subprocess.Popen[bytes], cluster_id: str) -> None:
        """Return once the launched process is alive and the port answers with its cluster id."""
        deadline = Deadline(self.config.start_timeout_s)
        while not deadline.expired():
            answering = self._cluster_probe(self.config.bootstrap, 2.0)
            alive = proc.poll() is None
            if answering is not None and answering != cluster_id:
                self._abandon(proc)
                raise KafkaLocalError(self._foreign_cluster(answering, cluster_id))
            if not alive:
                self.config.pid_file.unlink(missing_ok=True)
                raise KafkaLocalError(self._exited(proc.returncode))
            if answering == cluster_id:
                return
            time.sleep(0.2)
        self._abandon(proc)
        msg = (
            f"the broker did not come up within {self.config.start_timeout_s:g}s; "
            f"last lines of its log:\n{self._log_tail()}"
        )
        raise KafkaLocalError(msg)

    def _abandon(self, proc: subprocess.Popen[bytes]) -> None:
        terminate(proc.pid, self.config.stop_timeout_s)
        proc.wait()
        self.config.pid_file.unlink(missing_ok=True)

    def _foreign_cluster(self, answering: str, ours: str) -> str:
        return (
            f"port {self.config.port} on 127.0.0.1 belongs to another Kafka cluster (id "
            f"{answering}), not to the broker this command started (id {ours}, data dir "
            f"{self.config.data_dir}): another process took the port; stop it or choose "
            "another --port. The broker this command launched was stopped."
        )

    def _exited(self, code: int | None) -> str:
        taken = [p for p in (self.config.port, self.config.controller_port) if port_in_use(p)]
        if taken:
            return (
                f"port {taken[0]} on 127.0.0.1 was taken by another process while the broker "
                f"started (it exited with code {code}); stop that process or choose another "
                "--port"
            )
        return f"the broker exited with code {code}:\n{self._log_tail()}"

    def _log_tail(self) -> str:
        text = ""
        for path in (self.config.log_dir / "server.log", self.config.console_log):
            if path.exists():
                text += path.read_text(errors="replace")
        return tail_lines(text, LOG_TAIL_LINES) or "(the log is empty)"


def java_major_version(java: str) -> int:
    """Parse ``java -version``: '17.0.15' → 17, '1.8.0_392' → 8."""
    proc = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)  # noqa: S603
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if match is None:
        msg = f"could not read the Java version from '{java} -version'"
        raise KafkaLocalError(msg)
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def new_cluster_id() -> str:
    """A random cluster id that StorageTool's argument parser will not take for an option."""
    while True:
        cluster_id = uuid_to_kafka_id(uuid.uuid4())
        if not cluster_id.startswith("-"):
            return cluster_id


def uuid_to_kafka_id(value: uuid.UUID) -> str:
    """Kafka cluster ids are URL-safe base64 of 16 bytes without padding."""
    return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A port free on loopback right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_pair() -> int:
    """A port p such that p and p+1 are free on loopback (broker and controller)."""
    for _ in range(50):
        port = free_port()
        if port < 65000 and not port_in_use(port + 1):
            return port
    msg = "no free pair of loopback ports found"
    raise KafkaLocalError(msg)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def terminate(pid: int, timeout_s: float) -> None:
    """TERM, wait up to ``timeout_s``, then KILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = Deadline(timeout_s)
    while not deadline.expired():
        if not process_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def formatted_cluster_id(meta_properties: Path) -> str:
    """The ``cluster.id`` that ``StorageTool format`` wrote into ``meta.properties``."""
    try:
        text = meta_properties.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read {meta_properties} ({type(exc).__name__})"
        raise KafkaLocalError(msg) from exc
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id" and value.strip():
            return value.strip()
    msg = f"{meta_properties} has no cluster.id: move the data dir away to format it again"
    raise KafkaLocalError(msg)


def answering_cluster_id(kafka: KafkaSettings | str, timeout_s: float) -> str | None:
    """The id of the Kafka cluster answering there; None when none answers (or not to us)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from broker.kafka.settings import as_settings

    settings = as_settings(kafka)
    if settings.tls and not _tls_handshake(settings, timeout_s):
        return None  # a silent or non-TLS peer: the client's handshake would wait forever
    try:
        admin = KafkaAdminClient(
            **settings.kafka_python("readiness"),
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except (KafkaError, OSError, ValueError):
        return None
    try:
        cluster_id = admin.describe_cluster().get("cluster_id")
    except (KafkaError, OSError):
        return None
    finally:
        admin.close()
    return str(cluster_id) if cluster_id else None


def _tls_handshake(settings: KafkaSettings, timeout_s: float) -> bool:
    """Whether the first bootstrap server completes a TLS handshake we trust within the time."""
    host, _, port = settings.bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as raw:
            raw.settimeout(timeout_s)
            with settings.ssl_context().wrap_socket(raw, server_hostname=host):
                return True
    except (OSError, ValueError):
        return False


def _write_client_config(cfg: LocalKafkaConfig, user: str, password: str) -> None:
    """``<data dir>/clients/<user>.yaml``, mode 0600: a ``--kafka-config`` file for ``user``."""
    config = {
        "bootstrap": cfg.bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": SCRAM,
        "username": user,
        "password": password,
        "ssl_cafile": str(cfg.tls.ca_cert),
    }
    write_client_config(cfg.client_config(user), config)


def _without_secrets(text: str) -> str:
    return re.sub(r"password=[^\],\s]+", "password=***", text)


def tail_lines(text: str, count: int) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-count:])


@contextmanager
def job_cluster(
    prefix: str, kafka: KafkaSettings | None = None
) -> Iterator[tuple[KafkaSettings, bool]]:
    """``(settings, external)``: the configured cluster, or a throw-away local broker.

    An external cluster is used when ``KAFKA_BOOTSTRAP`` or ``RESPUBLICA_KAFKA_BOOTSTRAP`` is
    set, or when ``kafka`` names one. Otherwise the local broker runs on a free port in a
    temporary directory and is stopped (and its data removed) when the job ends, so a job
    never meets an earlier run's topics.
    """
    if kafka is not None or configured_elsewhere():
        yield kafka or KafkaSettings.load(), True
        return
    with tempfile.TemporaryDirectory(prefix=f"respublica-{prefix}-kafka-") as data:
        broker = LocalKafka(LocalKafkaConfig(port=free_port_pair(), data_dir=Path(data)))
        broker.start()
        try:
            yield broker.settings(), False
        finally:
            broker.stop()
