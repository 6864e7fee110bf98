// warmpoold's configuration: /etc/warmpool.toml parsed into plain structs.
//
// Contract: ParseConfig/LoadConfig either return a Config in which every value
// has been validated (ranges, enumerations, cross-pool rules), or an
// InvalidArgument status listing EVERY problem found, one per line, as
//   FILE:LINE:COL: KEY: MESSAGE
// where KEY is the dotted path of the offending value, e.g. `daemon.log_level`
// or `pool[1].container[0].ready.http.port` (indices are 0-based, in file
// order). Unknown keys are errors. No exception leaves this module.
//
// The structs are plain values (copyable, comparable) so a reload can diff the
// old and the new config. The TOML shape is documented in
// packaging/warmpool.toml, which is also DefaultConfigText().
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace warmpool {

// How warmpool decides that a pre-started container has finished its
// initialisation and may be frozen. TOML:
//   ready = { http = { port = 8080, path = "/healthz" }, timeout = "60s" }
//   ready = { tcp = 8080 } | { exec = ["/bin/check"] } | { none = true }
struct ReadyCheck {
  enum class Kind { kNone, kTcp, kHttp, kExec };
  Kind kind = Kind::kNone;
  int port = 0;                   // kTcp and kHttp: 1..65535.
  std::string path;               // kHttp: starts with '/', default "/".
  std::vector<std::string> exec;  // kExec: argv run inside the container, non-empty.
  // How long the check may keep failing after the container starts before
  // the entry is destroyed (and retried with back-off). Always > 0.
  std::chrono::milliseconds timeout{60000};

  bool operator==(const ReadyCheck&) const = default;
};

// CRI LinuxContainerResources subset; 0 means "unset" as on the wire.
struct ContainerResources {
  int64_t cpu_shares = 0;          // 2..262144
  int64_t cpu_quota = 0;           // microseconds per period, >= 1000
  int64_t cpu_period = 0;          // microseconds, 1000..1000000
  int64_t memory_limit_bytes = 0;  // TOML `memory_limit`: "512MiB" or bytes

  bool operator==(const ContainerResources&) const = default;
};

// A seccomp or AppArmor profile. TOML strings:
//   ""                 kUnset: the pod sets no profile
//   "runtime/default"  kRuntimeDefault
//   "unconfined"       kUnconfined
//   "localhost/<ref>"  kLocalhost, localhost_ref = "<ref>" (non-empty)
struct SecurityProfile {
  enum class Type { kUnset, kRuntimeDefault, kUnconfined, kLocalhost };
  Type type = Type::kUnset;
  std::string localhost_ref;

  bool operator==(const SecurityProfile&) const = default;
};

// Kubelet's defaults for a non-privileged container (procMount Default):
// what it sends as masked_paths / readonly_paths, so a template must too.
std::vector<std::string> KubeletDefaultMaskedPaths();
std::vector<std::string> KubeletDefaultReadonlyPaths();

// One `[[pool.container]]`: a container pre-created and started in every
// entry of an app pool.
struct ContainerTemplate {
  std::string name;   // required, DNS label, unique within its pool; the pod's container name
  std::string image;  // required
  std::vector<std::string> command;
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
  std::string working_dir;
  ContainerResources resources;
  ReadyCheck ready;     // required in TOML: an app pool must say when init is done
  // The container's own security settings, as kubelet sends them. seccomp
  // unset = Unconfined (kubelet's default for containers without
  // --seccomp-default); apparmor unset = absent. masked/readonly paths
  // default to kubelet's lists (empty for a privileged pool).
  SecurityProfile seccomp;
  SecurityProfile apparmor;
  std::optional<std::vector<std::string>> masked_paths;
  std::optional<std::vector<std::string>> readonly_paths;
  int source_line = 0;  // line of the `[[pool.container]]` header

  bool operator==(const ContainerTemplate&) const = default;
};

// CRI NamespaceMode. TOML strings "pod", "container", "node".
enum class NamespaceMode { kPod, kContainer, kNode };

// Defaults are what kubelet sends for an ordinary pod (no hostNetwork,
// hostPID, hostIPC, shareProcessNamespace): network and IPC per pod, PID per
// container. A template that differs from the request gets no hand-off.
struct NamespaceOptions {
  NamespaceMode network = NamespaceMode::kPod;    // "pod" | "node"
  NamespaceMode pid = NamespaceMode::kContainer;  // "pod" | "container" | "node"
  NamespaceMode ipc = NamespaceMode::kPod;        // "pod" | "node"

  bool operator==(const NamespaceOptions&) const = default;
};

struct DnsConfig {
  std::vector<std::string> servers;  // IPv4 or IPv6 addresses
  std::vector<std::string> searches;
  std::vector<std::string> options;

  bool operator==(const DnsConfig&) const = default;
};

// `[pool.sandbox]`: must equal what the pod asks for, or no hand-off.
struct SandboxTemplate {
  std::string runtime_handler;  // "" = the runtime's default handler
  NamespaceOptions namespaces;
  bool privileged = false;
  std::optional<int64_t> run_as_user;   // >= 0
  std::optional<int64_t> run_as_group;  // >= 0, only with run_as_user
  bool readonly_rootfs = false;
  std::vector<int64_t> supplemental_groups;  // each >= 0
  SecurityProfile seccomp;
  SecurityProfile apparmor;
  std::map<std::string, std::string> sysctls;
  DnsConfig dns;

  bool operator==(const SandboxTemplate&) const = default;
};

// When an entry's sandbox gets its real pod network. TOML "late" | "early".
enum class NetworkTiming { kLate, kEarly };

// One `[[pool]]`.
struct PoolConfig {
  std::string name;  // required, DNS label (a-z, 0-9, '-', 1..63), unique
  int size = 0;      // required, 0..1024: frozen entries to keep ready
  NetworkTiming network = NetworkTiming::kLate;
  std::vector<std::string> namespaces;  // empty = pods of any namespace
  bool is_default = false;              // TOML `default`: also serves pods naming no pool
  SandboxTemplate sandbox;
  std::vector<ContainerTemplate> containers;  // empty = a sandbox pool
  int source_line = 0;                        // line of the `[[pool]]` header

  bool is_sandbox_pool() const { return containers.empty(); }
  bool operator==(const PoolConfig&) const = default;
};

// `[daemon]`.
struct DaemonConfig {
  std::string listen = "/run/warmpool/warmpool.sock";
  std::string upstream = "/run/containerd/containerd.sock";
  std::string state_dir = "/var/lib/warmpool";
  std::string admin = "/run/warmpool/admin.sock";
  // trace | debug | info | warn | error | critical | off (spdlog's names).
  std::string log_level = "info";
  uint64_t memory_budget_bytes = uint64_t{4} << 30;  // TOML `memory_budget`
  int max_concurrent_creates = 2;                    // 1..64
  // TOML `refill_delay`: after a hand-off claims an entry, no creation starts
  // for this long (node-wide, not extended by further claims), so the
  // replacement's runc, CNI and app init do not compete for the CPU with the
  // pod being handed over. 0 = refill at once.
  std::chrono::milliseconds refill_delay{500};
  // Pools off: warmpoold is a pure proxy. The operator's emergency exit.
  bool passthrough = false;
  // TOML `metrics`: "" = off, else "host:port" such as "127.0.0.1:9464",
  // "[::1]:9464" or "localhost:9464" (port 0: any free port). The host is
  // an IP address or localhost, and a loopback one unless
  // metrics_allow_non_loopback.
  std::string metrics_address;
  bool metrics_allow_non_loopback = false;
  // cgroup parent of pool entries: an absolute cgroupfs path or a systemd
  // slice name ("warmpool.slice").
  std::string pool_cgroup_parent = "/warmpool";
  // containerd's root (its `root` setting); the CRI plugin keeps each
  // sandbox's hostname and resolv.conf under it. "" = ask containerd.
  std::string containerd_root;
  // network = "late" pools (daemon/late_network.h): the containerd runtime
  // handler their sandboxes are made through (its cni_conf_dir holds the
  // placeholder network), and the node's CNI network config and plugins,
  // run by warmpoold at hand-off. cni_bin_dir may list several directories,
  // ':'-separated (CNI_PATH).
  std::string late_runtime_handler = "warmpool-late";
  std::string cni_conf_dir = "/etc/cni/net.d";
  std::string cni_bin_dir = "/opt/cni/bin";

  bool operator==(const DaemonConfig&) const = default;
};

struct Config {
  std::string source;  // the file name (or the name passed to ParseConfig)
  DaemonConfig daemon;
  std::vector<PoolConfig> pools;

  bool operator==(const Config&) const = default;
};

// Parses and validates TOML text. `source_name` is used in error messages.
absl::StatusOr<Config> ParseConfig(std::string_view toml_text, std::string_view source_name);

// Reads and parses a file. An unreadable file gives NotFound / PermissionDenied
// / Unavailable naming the path; a bad one gives ParseConfig's errors.
absl::StatusOr<Config> LoadConfig(const std::string& path);

// The documented default config, identical to packaging/warmpool.toml. It
// parses to the built-in defaults (no pools).
std::string DefaultConfigText();

// "4GiB", "512MiB", "512Mi", "100M", "1000", "64KiB". Units follow Kubernetes
// quantities: K/k, M, G, T (and KB, MB, GB, TB) are powers of 1000; Ki, Mi, Gi,
// Ti (and KiB, MiB, GiB, TiB) powers of 1024; B or no unit is bytes.
absl::StatusOr<uint64_t> ParseByteSize(std::string_view text);

// "60s", "500ms", "2m", "1h", "1m30s": non-negative integers, each with a
// unit of ms, s, m or h.
absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text);

}  // namespace warmpool
