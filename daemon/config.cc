#include "daemon/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <sstream>
#include <limits>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"

namespace warmpool {

// packaging/warmpool.toml, embedded at build time (cmake/EmbedText.cmake):
// the file is the one source of the documented default.
namespace embedded {
extern const std::string_view kDefaultConfig;
}  // namespace embedded

namespace {

// absl's string_view is not std::string_view in Debian's build of abseil,
// so this module builds its strings with these instead of absl::StrCat.
void AppendPiece(std::string* out, std::string_view piece) { out->append(piece); }
template <typename T>
requires std::is_integral_v<T>
void AppendPiece(std::string* out, T value) { out->append(std::to_string(value)); }
template <typename... Pieces>
std::string Cat(const Pieces&... pieces) {
  std::string out;
  (AppendPiece(&out, pieces), ...);
  return out;
}
template <typename Container>
std::string Join(const Container& items, std::string_view separator) {
  std::string out;
  bool first = true;
  for (const auto& item : items) {
    if (!first) out.append(separator);
    out.append(item);
    first = false;
  }
  return out;
}
bool StartsWith(std::string_view s, std::string_view prefix) { return s.starts_with(prefix); }
bool EndsWith(std::string_view s, std::string_view suffix) { return s.ends_with(suffix); }

constexpr int kMaxPoolSize = 1024;  // far above any node's max-pods
constexpr int kMaxConcurrentCreates = 64;

// ---------------------------------------------------------------------------
// Error collection.

struct Diagnostic {
  uint32_t line = 0;
  uint32_t column = 0;
  std::string key;
  std::string message;
};

class Diagnostics {
 public:
  void Add(const toml::source_position& at, std::string key, std::string message) {
    items_.push_back({at.line, at.column, std::move(key), std::move(message)});
  }
  bool empty() const { return items_.empty(); }

  // All diagnostics, in file order, one line each.
  absl::Status ToStatus(std::string_view source) {
    if (items_.empty()) return absl::OkStatus();
    std::stable_sort(items_.begin(), items_.end(), [](const Diagnostic& a, const Diagnostic& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    std::vector<std::string> lines;
    lines.reserve(items_.size());
    for (const Diagnostic& d : items_) {
      lines.push_back(Cat(source, ":", d.line, ":", d.column, ": ", d.key, ": ", d.message));
    }
    return absl::InvalidArgumentError(Join(lines, "\n"));
  }

 private:
  std::vector<Diagnostic> items_;
};

std::string_view TypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::none:
      return "nothing";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
  }
  return "an unknown type";
}

std::string TypeError(std::string_view expected, const toml::node& got) {
  return Cat("expected ", expected, ", got ", TypeName(got.type()));
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string Quoted(std::string_view s) { return Cat("\"", s, "\""); }

std::string QuotedList(std::initializer_list<std::string_view> items) {
  std::vector<std::string> quoted;
  for (std::string_view item : items) quoted.push_back(Quoted(item));
  return Join(quoted, ", ");
}

// A DNS label (RFC 1123): 1..63 of [a-z0-9-], starting and ending alphanumeric.
bool IsDnsLabel(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '-') return false;
  }
  return s.front() != '-' && s.back() != '-';
}

// ---------------------------------------------------------------------------
// Section: one TOML table being decoded. Reports unknown keys on
// construction; every Read* records its own errors and returns whether it
// stored a value (an absent key stores nothing and is not an error).

class Section {
 public:
  Section(const toml::table& table, std::string path, Diagnostics& diag,
          std::initializer_list<std::string_view> known_keys,
          const toml::source_position* fallback = nullptr)
      : table_(table), path_(std::move(path)), diag_(diag), known_(known_keys) {
    where_ = table.source().begin;
    if (where_.line == 0 && fallback != nullptr) where_ = *fallback;
    for (auto&& [key, node] : table_) {
      if (std::find(known_.begin(), known_.end(), key.str()) != known_.end()) continue;
      std::string message = "unknown key";
      std::string_view best;
      size_t best_distance = 3;
      for (std::string_view candidate : known_) {
        size_t distance = EditDistance(key.str(), candidate);
        if (distance < best_distance && distance < key.str().size()) {
          best = candidate;
          best_distance = distance;
        }
      }
      if (!best.empty()) message += Cat("; did you mean ", best, "?");
      toml::source_position at =
          key.source().begin.line != 0 ? key.source().begin : node.source().begin;
      diag_.Add(at, KeyPath(key.str()), std::move(message));
    }
  }

  const std::string& path() const { return path_; }
  const toml::source_position& where() const { return where_; }
  std::string KeyPath(std::string_view key) const {
    return path_.empty() ? std::string(key) : Cat(path_, ".", key);
  }
  const toml::node* Find(std::string_view key) const { return table_.get(key); }
  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  // Where a key's value is, or the table itself when the key is absent.
  toml::source_position At(std::string_view key) const {
    const toml::node* node = Find(key);
    if (node != nullptr && node->source().begin.line != 0) return node->source().begin;
    return where_;
  }
  void Error(std::string_view key, std::string message) const {
    diag_.Add(At(key), KeyPath(key), std::move(message));
  }
  void ErrorAt(const toml::node& node, std::string key_path, std::string message) const {
    toml::source_position at = node.source().begin.line != 0 ? node.source().begin : where_;
    diag_.Add(at, std::move(key_path), std::move(message));
  }
  void Missing(std::string_view key, std::string_view what) const {
    diag_.Add(where_, KeyPath(key), Cat("missing; ", what));
  }

  bool ReadString(std::string_view key, std::string* out) const {
    const toml::node* node = Find(key);
    if (node == nullptr) return false;
    if (const auto* value = node->as_string()) {
      *out = value->get();
      return true;
    }
    Error(key, TypeError("a string", *node));
    return false;
  }

  bool ReadBool(std::string_view key, bool* out) const {
    const toml::node* node = Find(key);
    if (node == nullptr) return false;
    if (const auto* value = node->as_boolean()) {
      *out = value->get();
      return true;
    }
    Error(key, TypeError("a boolean (true or false)", *node));
    return false;
  }

  template <typename Int>
  bool ReadInt(std::string_view key, int64_t min, int64_t max, Int* out) const {
    const toml::node* node = Find(key);
    if (node == nullptr) return false;
    return CheckInt(*node, KeyPath(key), min, max, out);
  }

  template <typename Int>
  bool CheckInt(const toml::node& node, std::string key_path, int64_t min, int64_t max,
                Int* out) const {
    const auto* value = node.as_integer();
    if (value == nullptr) {
      ErrorAt(node, std::move(key_path), TypeError("an integer", node));
      return false;
    }
    int64_t v = value->get();
    if (v < min || v > max) {
      std::string allowed = max == std::numeric_limits<int64_t>::max()
                                ? Cat("must be >= ", min)
                                : Cat("must be between ", min, " and ", max);
      ErrorAt(node, std::move(key_path), Cat(allowed, ", got ", v));
      return false;
    }
    *out = static_cast<Int>(v);
    return true;
  }

  // A string that must be one of `allowed`.
  bool ReadChoice(std::string_view key, std::initializer_list<std::string_view> allowed,
                  std::string* out) const {
    std::string value;
    if (!ReadString(key, &value)) return false;
    if (std::find(allowed.begin(), allowed.end(), value) == allowed.end()) {
      Error(key, Cat("must be one of ", QuotedList(allowed), "; got ", Quoted(value)));
      return false;
    }
    *out = std::move(value);
    return true;
  }

  const toml::array* ReadArray(std::string_view key, std::string_view expected) const {
    const toml::node* node = Find(key);
    if (node == nullptr) return nullptr;
    if (const auto* array = node->as_array()) return array;
    Error(key, TypeError(expected, *node));
    return nullptr;
  }

  const toml::table* ReadTable(std::string_view key) const {
    const toml::node* node = Find(key);
    if (node == nullptr) return nullptr;
    if (const auto* table = node->as_table()) return table;
    Error(key, TypeError("a table", *node));
    return nullptr;
  }

  bool ReadStringArray(std::string_view key, std::vector<std::string>* out) const {
    const toml::array* array = ReadArray(key, "an array of strings");
    if (array == nullptr) return false;
    std::vector<std::string> values;
    bool ok = true;
    for (size_t i = 0; i < array->size(); ++i) {
      const toml::node& element = *array->get(i);
      if (const auto* s = element.as_string()) {
        values.push_back(s->get());
      } else {
        ErrorAt(element, Cat(KeyPath(key), "[", i, "]"), TypeError("a string", element));
        ok = false;
      }
    }
    if (ok) *out = std::move(values);
    return ok;
  }

  bool ReadIntArray(std::string_view key, int64_t min, int64_t max,
                    std::vector<int64_t>* out) const {
    const toml::array* array = ReadArray(key, "an array of integers");
    if (array == nullptr) return false;
    std::vector<int64_t> values;
    bool ok = true;
    for (size_t i = 0; i < array->size(); ++i) {
      int64_t v = 0;
      if (CheckInt(*array->get(i), Cat(KeyPath(key), "[", i, "]"), min, max, &v)) {
        values.push_back(v);
      } else {
        ok = false;
      }
    }
    if (ok) *out = std::move(values);
    return ok;
  }

  // A table whose every value is a string, e.g. env = { MODEL = "small" }.
  bool ReadStringMap(std::string_view key, std::map<std::string, std::string>* out) const {
    const toml::node* node = Find(key);
    if (node == nullptr) return false;
    const auto* table = node->as_table();
    if (table == nullptr) {
      Error(key, TypeError("a table of strings", *node));
      return false;
    }
    std::map<std::string, std::string> values;
    bool ok = true;
    for (auto&& [name, value] : *table) {
      std::string name_path = Cat(KeyPath(key), ".", name.str());
      if (const auto* s = value.as_string()) {
        values.emplace(std::string(name.str()), s->get());
      } else {
        ErrorAt(value, name_path, TypeError("a string", value));
        ok = false;
      }
    }
    if (ok) *out = std::move(values);
    return ok;
  }

  // A byte size: an integer (bytes) or a string such as "4GiB".
  bool ReadByteSize(std::string_view key, uint64_t* out) const {
    const toml::node* node = Find(key);
    if (node == nullptr) return false;
    if (const auto* i = node->as_integer()) {
      if (i->get() < 0) {
        Error(key, Cat("must be >= 0, got ", i->get()));
        return false;
      }
      *out = static_cast<uint64_t>(i->get());
      return true;
    }
    if (const auto* s = node->as_string()) {
      absl::StatusOr<uint64_t> bytes = ParseByteSize(s->get());
      if (!bytes.ok()) {
        Error(key, std::string(bytes.status().message()));
        return false;
      }
      *out = *bytes;
      return true;
    }
    Error(key, TypeError("a byte size (a string such as \"4GiB\", or an integer)", *node));
    return false;
  }

  bool ReadDuration(std::string_view key, std::chrono::milliseconds* out) const {
    std::string text;
    if (!ReadString(key, &text)) return false;
    absl::StatusOr<std::chrono::milliseconds> duration = ParseDuration(text);
    if (!duration.ok()) {
      Error(key, std::string(duration.status().message()));
      return false;
    }
    *out = *duration;
    return true;
  }

 private:
  const toml::table& table_;
  std::string path_;
  Diagnostics& diag_;
  std::vector<std::string_view> known_;
  toml::source_position where_;
};

// ---------------------------------------------------------------------------
// [daemon]

// A metrics address "host:port": host an IP address ([v6] in brackets) or
// "localhost", port 0..65535 (0: the kernel picks a free one). False with
// `why` when malformed; `loopback` says whether the host is one.
bool ParseMetricsAddress(std::string_view address, bool* loopback, std::string* why) {
  std::string_view host;
  std::string_view port;
  if (StartsWith(address, "[")) {
    size_t close = address.find("]:");
    if (close == std::string_view::npos) {
      *why = "an IPv6 address must be written as [::1]:PORT";
      return false;
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) {
      *why = "missing :PORT";
      return false;
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      *why = "an IPv6 address must be written as [::1]:PORT";
      return false;
    }
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) ||
      std::stoi(std::string(port)) > 65535) {
    *why = Cat("port must be 0..65535 (0: any free port), got ", Quoted(port));
    return false;
  }
  std::string host_string(host);
  in_addr v4{};
  in6_addr v6{};
  if (host == "localhost") {
    *loopback = true;
  } else if (inet_pton(AF_INET, host_string.c_str(), &v4) == 1) {
    *loopback = (ntohl(v4.s_addr) >> 24) == 127;
  } else if (inet_pton(AF_INET6, host_string.c_str(), &v6) == 1) {
    *loopback = IN6_IS_ADDR_LOOPBACK(&v6);
  } else {
    *why = Cat("host must be an IP address or localhost, got ", Quoted(host));
    return false;
  }
  return true;
}

void ReadAbsolutePath(const Section& s, std::string_view key, std::string* out) {
  std::string value;
  if (!s.ReadString(key, &value)) return;
  if (value.empty() || value.front() != '/') {
    s.Error(key, Cat("must be an absolute path, got ", Quoted(value)));
    return;
  }
  *out = std::move(value);
}

void ParseDaemon(const Section& s, DaemonConfig* daemon) {
  ReadAbsolutePath(s, "listen", &daemon->listen);
  ReadAbsolutePath(s, "upstream", &daemon->upstream);
  ReadAbsolutePath(s, "state_dir", &daemon->state_dir);
  ReadAbsolutePath(s, "admin", &daemon->admin);
  s.ReadChoice("log_level", {"trace", "debug", "info", "warn", "error", "critical", "off"},
               &daemon->log_level);
  uint64_t budget = 0;
  if (s.ReadByteSize("memory_budget", &budget)) {
    if (budget == 0) {
      s.Error("memory_budget",
              "must be greater than 0 (to keep no entries, set the pool sizes to 0 or "
              "passthrough = true)");
    } else {
      daemon->memory_budget_bytes = budget;
    }
  }
  s.ReadInt("max_concurrent_creates", 1, kMaxConcurrentCreates, &daemon->max_concurrent_creates);
  std::chrono::milliseconds refill_delay{};
  if (s.ReadDuration("refill_delay", &refill_delay)) {
    if (refill_delay > std::chrono::minutes(1)) {  // ParseDuration has no sign: never < 0
      s.Error("refill_delay", "must be between \"0s\" and \"1m\"");
    } else {
      daemon->refill_delay = refill_delay;
    }
  }
  s.ReadBool("passthrough", &daemon->passthrough);
  bool allow_remote = false;
  s.ReadBool("metrics_allow_non_loopback", &allow_remote);
  daemon->metrics_allow_non_loopback = allow_remote;
  std::string metrics;
  if (s.ReadString("metrics", &metrics)) {
    std::string why;
    bool loopback = false;
    if (!metrics.empty() && !ParseMetricsAddress(metrics, &loopback, &why)) {
      s.Error("metrics",
              Cat("must be \"\" (off) or a host:port such as \"127.0.0.1:9464\"; ", why));
    } else if (!metrics.empty() && !loopback && !allow_remote) {
      s.Error(
          "metrics",
          Cat("must be a loopback address (127.0.0.1, [::1] or localhost), got ", Quoted(metrics),
              "; metrics carry pool and pod names: to serve them beyond this node, set "
              "daemon.metrics_allow_non_loopback = true"));
    } else {
      daemon->metrics_address = std::move(metrics);
    }
  }
  std::string parent;
  if (s.ReadString("pool_cgroup_parent", &parent)) {
    bool slice = !parent.empty() && parent.find('/') == std::string::npos &&
                 EndsWith(parent, ".slice") && parent.size() > 6;
    bool path = !parent.empty() && parent.front() == '/' &&
                parent.find("/../") == std::string::npos && !EndsWith(parent, "/..");
    if (!slice && !path) {
      s.Error("pool_cgroup_parent",
              Cat("must be an absolute cgroup path (\"/warmpool\") or a systemd slice "
                  "name (\"warmpool.slice\"), got ",
                  Quoted(parent)));
    } else {
      daemon->pool_cgroup_parent = std::move(parent);
    }
  }
  std::string root;
  if (s.ReadString("containerd_root", &root)) {
    if (!root.empty() && root.front() != '/') {
      s.Error("containerd_root",
              Cat("must be \"\" (ask containerd) or an absolute path (containerd's root, "
                  "\"/var/lib/containerd\"), got ",
                  Quoted(root)));
    } else {
      daemon->containerd_root = std::move(root);
    }
  }
  std::string handler;
  if (s.ReadString("late_runtime_handler", &handler)) {
    if (handler.empty()) {
      s.Error("late_runtime_handler",
              "must name the containerd runtime handler whose cni_conf_dir holds warmpool's "
              "placeholder network (\"warmpool-late\")");
    } else {
      daemon->late_runtime_handler = std::move(handler);
    }
  }
  for (auto [key, out] : {std::pair<const char*, std::string*>{"cni_conf_dir", &daemon->cni_conf_dir},
                          {"cni_bin_dir", &daemon->cni_bin_dir}}) {
    std::string dir;
    if (!s.ReadString(key, &dir)) continue;
    bool ok = !dir.empty();
    std::stringstream parts(dir);
    for (std::string part; std::getline(parts, part, ':');) {
      if (part.empty() || part.front() != '/') ok = false;
      if (std::string_view(key) == "cni_conf_dir") break;
    }
    if (std::string_view(key) == "cni_conf_dir" && dir.find(':') != std::string::npos) ok = false;
    if (!ok) {
      s.Error(key, Cat("must be an absolute path",
                       std::string_view(key) == "cni_bin_dir" ? " (or several, \":\"-separated)"
                                                              : "",
                       ", got ", Quoted(dir)));
    } else {
      *out = std::move(dir);
    }
  }
  if (daemon->listen == daemon->upstream) {
    s.Error("upstream", "must differ from listen: warmpoold would forward every call to itself");
  }
  if (daemon->admin == daemon->listen) {
    s.Error("admin", "must differ from listen: the admin API and the CRI need their own sockets");
  }
}

// ---------------------------------------------------------------------------
// [pool.sandbox]

bool ParseNamespaceMode(const Section& s, std::string_view key,
                        std::initializer_list<std::string_view> allowed, NamespaceMode* out) {
  std::string value;
  if (!s.ReadChoice(key, allowed, &value)) return false;
  if (value == "pod") {
    *out = NamespaceMode::kPod;
  } else if (value == "container") {
    *out = NamespaceMode::kContainer;
  } else {
    *out = NamespaceMode::kNode;
  }
  return true;
}

void ReadSecurityProfile(const Section& s, std::string_view key, SecurityProfile* out) {
  std::string value;
  if (!s.ReadString(key, &value)) return;
  constexpr std::string_view kLocalhost = "localhost/";
  if (value.empty()) {
    *out = {};
  } else if (value == "runtime/default") {
    *out = {SecurityProfile::Type::kRuntimeDefault, ""};
  } else if (value == "unconfined") {
    *out = {SecurityProfile::Type::kUnconfined, ""};
  } else if (StartsWith(value, kLocalhost) && value.size() > kLocalhost.size()) {
    *out = {SecurityProfile::Type::kLocalhost, value.substr(kLocalhost.size())};
  } else {
    s.Error(key, Cat("must be \"\", \"runtime/default\", \"unconfined\" or "
                     "\"localhost/<profile>\"; got ",
                     Quoted(value)));
  }
}

void ParseSandbox(const Section& s, Diagnostics& diag, SandboxTemplate* sandbox) {
  s.ReadString("runtime_handler", &sandbox->runtime_handler);
  if (const toml::table* ns = s.ReadTable("namespaces")) {
    Section n(*ns, s.KeyPath("namespaces"), diag, {"network", "pid", "ipc"}, &s.where());
    ParseNamespaceMode(n, "network", {"pod", "node"}, &sandbox->namespaces.network);
    ParseNamespaceMode(n, "pid", {"pod", "container", "node"}, &sandbox->namespaces.pid);
    ParseNamespaceMode(n, "ipc", {"pod", "node"}, &sandbox->namespaces.ipc);
  }
  s.ReadBool("privileged", &sandbox->privileged);
  constexpr int64_t kMaxId = std::numeric_limits<uint32_t>::max() - 1;
  int64_t id = 0;
  if (s.ReadInt("run_as_user", 0, kMaxId, &id)) sandbox->run_as_user = id;
  if (s.ReadInt("run_as_group", 0, kMaxId, &id)) sandbox->run_as_group = id;
  if (s.Has("run_as_group") && !s.Has("run_as_user")) {
    s.Error("run_as_group", "needs run_as_user: the CRI accepts a group only with a user");
  }
  s.ReadBool("readonly_rootfs", &sandbox->readonly_rootfs);
  s.ReadIntArray("supplemental_groups", 0, kMaxId, &sandbox->supplemental_groups);
  ReadSecurityProfile(s, "seccomp", &sandbox->seccomp);
  ReadSecurityProfile(s, "apparmor", &sandbox->apparmor);
  s.ReadStringMap("sysctls", &sandbox->sysctls);
  if (const toml::table* dns = s.ReadTable("dns")) {
    Section d(*dns, s.KeyPath("dns"), diag, {"servers", "searches", "options"}, &s.where());
    std::vector<std::string> servers;
    if (d.ReadStringArray("servers", &servers)) {
      const toml::array& array = *d.Find("servers")->as_array();
      for (size_t i = 0; i < servers.size(); ++i) {
        in_addr v4{};
        in6_addr v6{};
        if (inet_pton(AF_INET, servers[i].c_str(), &v4) != 1 &&
            inet_pton(AF_INET6, servers[i].c_str(), &v6) != 1) {
          d.ErrorAt(*array.get(i), Cat(d.KeyPath("servers"), "[", i, "]"),
                    Cat("must be an IPv4 or IPv6 address, got ", Quoted(servers[i])));
        }
      }
      sandbox->dns.servers = std::move(servers);
    }
    d.ReadStringArray("searches", &sandbox->dns.searches);
    d.ReadStringArray("options", &sandbox->dns.options);
  }
}

// ---------------------------------------------------------------------------
// [[pool.container]]

void ParseReady(const Section& r, Diagnostics& diag, ReadyCheck* ready) {
  // Each present kind key, in the order written in the docs.
  std::vector<std::string_view> kinds;
  for (std::string_view kind : {"http", "tcp", "exec", "none"}) {
    if (r.Has(kind)) kinds.push_back(kind);
  }
  if (kinds.empty()) {
    diag.Add(r.where(), r.path(),
             "needs exactly one kind: { http = { port = PORT, path = \"/\" } }, { tcp = PORT }, "
             "{ exec = [\"cmd\", ...] } or { none = true }");
  } else if (kinds.size() > 1) {
    diag.Add(r.where(), r.path(),
             Cat("needs exactly one kind of check, got ", Join(kinds, " and ")));
  }
  if (const toml::table* http = r.ReadTable("http")) {
    Section h(*http, r.KeyPath("http"), diag, {"port", "path"}, &r.where());
    ready->kind = ReadyCheck::Kind::kHttp;
    if (!h.Has("port")) h.Missing("port", "the HTTP port to GET, 1..65535");
    h.ReadInt("port", 1, 65535, &ready->port);
    ready->path = "/";
    std::string path;
    if (h.ReadString("path", &path)) {
      if (path.empty() || path.front() != '/') {
        h.Error("path", Cat("must start with '/', got ", Quoted(path)));
      } else {
        ready->path = std::move(path);
      }
    }
  }
  if (r.Has("tcp")) {
    ready->kind = ReadyCheck::Kind::kTcp;
    r.ReadInt("tcp", 1, 65535, &ready->port);
  }
  if (r.Has("exec")) {
    ready->kind = ReadyCheck::Kind::kExec;
    if (r.ReadStringArray("exec", &ready->exec) &&
        (ready->exec.empty() || ready->exec[0].empty())) {
      r.Error("exec", "must name a command: [\"/bin/check\", \"arg\", ...]");
    }
  }
  bool none = false;
  if (r.ReadBool("none", &none)) {
    ready->kind = ReadyCheck::Kind::kNone;
    if (!none) r.Error("none", "can only be true (the container has no readiness check)");
  }
  if (r.ReadDuration("timeout", &ready->timeout) && ready->timeout.count() <= 0) {
    r.Error("timeout", "must be greater than 0");
    ready->timeout = std::chrono::milliseconds(60000);
  }
}

}  // namespace

// kubelet's pkg/securitycontext defaults (procMount Default, not privileged).
std::vector<std::string> KubeletDefaultMaskedPaths() {
  return {"/proc/asound",       "/proc/acpi",        "/proc/kcore",       "/proc/keys",
          "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
          "/proc/scsi",          "/sys/firmware",     "/sys/devices/virtual/powercap"};
}
std::vector<std::string> KubeletDefaultReadonlyPaths() {
  return {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
}

namespace {

void ParseContainer(const Section& s, Diagnostics& diag, ContainerTemplate* c) {
  c->source_line = static_cast<int>(s.where().line);
  if (!s.Has("name")) s.Missing("name", "every container needs a name, unique in its pool");
  if (s.ReadString("name", &c->name) && !IsDnsLabel(c->name)) {
    s.Error("name", Cat("must be 1 to 63 characters of a-z, 0-9 and '-', starting and "
                        "ending with a letter or digit; got ",
                        Quoted(c->name)));
  }
  if (!s.Has("image")) s.Missing("image", "the image to pre-start, e.g. \"registry/app:1.0\"");
  if (s.ReadString("image", &c->image) && c->image.empty()) {
    s.Error("image", "must not be empty");
  }
  s.ReadStringArray("command", &c->command);
  s.ReadStringArray("args", &c->args);
  if (s.ReadStringMap("env", &c->env)) {
    for (const auto& [name, value] : c->env) {
      if (name.empty() || name.find('=') != std::string::npos) {
        s.Error("env", Cat("variable names must be non-empty and without '=', got ", Quoted(name)));
      }
    }
  }
  s.ReadString("working_dir", &c->working_dir);
  ReadSecurityProfile(s, "seccomp", &c->seccomp);
  ReadSecurityProfile(s, "apparmor", &c->apparmor);
  for (const char* key : {"masked_paths", "readonly_paths"}) {
    std::vector<std::string> paths;
    if (!s.ReadStringArray(key, &paths)) continue;
    for (const std::string& p : paths) {
      if (p.empty() || p.front() != '/') {
        s.Error(key, Cat("must list absolute paths, got ", Quoted(p)));
      }
    }
    (std::string_view(key) == "masked_paths" ? c->masked_paths : c->readonly_paths) = paths;
  }
  if (const toml::table* resources = s.ReadTable("resources")) {
    Section r(*resources, s.KeyPath("resources"), diag,
              {"cpu_shares", "cpu_quota", "cpu_period", "memory_limit"}, &s.where());
    r.ReadInt("cpu_shares", 2, 262144, &c->resources.cpu_shares);
    r.ReadInt("cpu_quota", 1000, std::numeric_limits<int64_t>::max(), &c->resources.cpu_quota);
    r.ReadInt("cpu_period", 1000, 1000000, &c->resources.cpu_period);
    uint64_t limit = 0;
    if (r.ReadByteSize("memory_limit", &limit)) {
      if (limit > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        r.Error("memory_limit", "is too large");
      } else {
        c->resources.memory_limit_bytes = static_cast<int64_t>(limit);
      }
    }
  }
  if (!s.Has("ready")) {
    s.Missing("ready",
              "say when the app's init is done: ready = { http = { port = PORT, path = \"/\" } }, "
              "{ tcp = PORT }, { exec = [\"cmd\"] } or { none = true }");
  } else if (const toml::table* ready = s.ReadTable("ready")) {
    Section r(*ready, s.KeyPath("ready"), diag, {"http", "tcp", "exec", "none", "timeout"},
              &s.where());
    ParseReady(r, diag, &c->ready);
  }
}

// ---------------------------------------------------------------------------
// [[pool]]

// Where the values that cross-pool rules look at are, for error positions.
struct PoolNodes {
  const toml::node* name = nullptr;
  const toml::node* is_default = nullptr;
  const toml::node* container = nullptr;
};

void ParsePool(const Section& s, Diagnostics& diag, PoolConfig* pool, PoolNodes* nodes) {
  pool->source_line = static_cast<int>(s.where().line);
  nodes->name = s.Find("name");
  nodes->is_default = s.Find("default");
  nodes->container = s.Find("container");

  if (!s.Has("name")) s.Missing("name", "pods opt in with the annotation warmpool.io/pool: NAME");
  if (s.ReadString("name", &pool->name) && !IsDnsLabel(pool->name)) {
    s.Error("name", Cat("must be 1 to 63 characters of a-z, 0-9 and '-', starting and "
                        "ending with a letter or digit; got ",
                        Quoted(pool->name)));
  }
  if (!s.Has("size")) s.Missing("size", "the number of frozen entries to keep ready, 0..1024");
  s.ReadInt("size", 0, kMaxPoolSize, &pool->size);
  std::string network;
  if (s.ReadChoice("network", {"late", "early"}, &network)) {
    pool->network = network == "early" ? NetworkTiming::kEarly : NetworkTiming::kLate;
  }
  if (s.ReadStringArray("namespaces", &pool->namespaces)) {
    const toml::array& array = *s.Find("namespaces")->as_array();
    for (size_t i = 0; i < pool->namespaces.size(); ++i) {
      if (!IsDnsLabel(pool->namespaces[i])) {
        s.ErrorAt(*array.get(i), Cat(s.KeyPath("namespaces"), "[", i, "]"),
                  Cat("must be a Kubernetes namespace name (a-z, 0-9, '-'), got ",
                      Quoted(pool->namespaces[i])));
      }
    }
  }
  s.ReadBool("default", &pool->is_default);

  if (const toml::table* sandbox = s.ReadTable("sandbox")) {
    Section sb(*sandbox, s.KeyPath("sandbox"), diag,
               {"runtime_handler", "namespaces", "privileged", "run_as_user", "run_as_group",
                "readonly_rootfs", "supplemental_groups", "seccomp", "apparmor", "sysctls", "dns"},
               &s.where());
    ParseSandbox(sb, diag, &pool->sandbox);
  }
  if (pool->network == NetworkTiming::kLate && !pool->sandbox.runtime_handler.empty()) {
    s.Error(s.Has("network") ? "network" : "sandbox",
            Cat("network = \"late\" makes entries through daemon.late_runtime_handler, which "
                "stands in for the default runtime handler only; this pool's runtime_handler is ",
                Quoted(pool->sandbox.runtime_handler), ": set network = \"early\""));
  }

  if (const toml::array* containers =
          s.ReadArray("container", "an array of tables (write [[pool.container]])")) {
    for (size_t i = 0; i < containers->size(); ++i) {
      const toml::node& node = *containers->get(i);
      std::string path = Cat(s.KeyPath("container"), "[", i, "]");
      const toml::table* table = node.as_table();
      if (table == nullptr) {
        s.ErrorAt(node, path, TypeError("a table ([[pool.container]])", node));
        continue;
      }
      Section c(*table, path, diag,
                {"name", "image", "command", "args", "env", "working_dir", "resources", "ready", "seccomp",
                 "apparmor", "masked_paths", "readonly_paths"},
                &s.where());
      ContainerTemplate container;
      ParseContainer(c, diag, &container);
      pool->containers.push_back(std::move(container));
    }
    // Container names are unique within the pool.
    for (size_t i = 0; i < pool->containers.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        if (!pool->containers[i].name.empty() &&
            pool->containers[i].name == pool->containers[j].name) {
          const toml::table& table = *containers->get(i)->as_table();
          s.ErrorAt(*table.get("name"), Cat(s.KeyPath("container"), "[", i, "].name"),
                    Cat("duplicate container name ", Quoted(pool->containers[i].name),
                        "; first used at line ", pool->containers[j].source_line));
          break;
        }
      }
    }
  }
}

void CheckPools(const std::vector<PoolConfig>& pools, const std::vector<PoolNodes>& nodes,
                const Section& root) {
  const PoolConfig* first_default = nullptr;
  for (size_t i = 0; i < pools.size(); ++i) {
    const PoolConfig& pool = pools[i];
    std::string path = Cat("pool[", i, "]");
    if (!pool.name.empty()) {
      for (size_t j = 0; j < i; ++j) {
        if (pools[j].name == pool.name) {
          root.ErrorAt(*nodes[i].name, path + ".name",
                       Cat("duplicate pool name ", Quoted(pool.name), "; first used at line ",
                           pools[j].source_line));
          break;
        }
      }
    }
    if (!pool.is_default) continue;
    if (!pool.is_sandbox_pool()) {
      root.ErrorAt(*nodes[i].is_default, path + ".default",
                   "a default pool must be a sandbox pool (no [[pool.container]]): it also "
                   "serves pods that name no pool, and such a pod cannot be handed pre-started "
                   "containers of an app it did not ask for");
    }
    if (first_default != nullptr) {
      root.ErrorAt(*nodes[i].is_default, path + ".default",
                   Cat("only one pool may be the default; pool ", Quoted(first_default->name),
                       " (line ", first_default->source_line, ") already is"));
    } else {
      first_default = &pool;
    }
  }
}

absl::StatusOr<Config> Decode(const toml::table& document, std::string_view source_name) {
  Diagnostics diag;
  Config config;
  config.source = std::string(source_name);
  toml::source_position top{1, 1};
  Section root(document, "", diag, {"daemon", "pool"}, &top);

  if (const toml::table* daemon = root.ReadTable("daemon")) {
    Section s(*daemon, "daemon", diag,
              {"listen", "upstream", "state_dir", "admin", "log_level", "memory_budget",
               "max_concurrent_creates", "refill_delay", "passthrough", "metrics",
               "metrics_allow_non_loopback", "pool_cgroup_parent", "containerd_root",
               "late_runtime_handler", "cni_conf_dir", "cni_bin_dir"},
              &top);
    ParseDaemon(s, &config.daemon);
  }

  std::vector<PoolNodes> nodes;
  if (const toml::array* pools = root.ReadArray("pool", "an array of tables (write [[pool]])")) {
    for (size_t i = 0; i < pools->size(); ++i) {
      const toml::node& node = *pools->get(i);
      std::string path = Cat("pool[", i, "]");
      const toml::table* table = node.as_table();
      if (table == nullptr) {
        root.ErrorAt(node, path, TypeError("a table ([[pool]])", node));
        continue;
      }
      Section s(*table, path, diag,
                {"name", "size", "network", "namespaces", "default", "sandbox", "container"}, &top);
      PoolConfig pool;
      PoolNodes pool_nodes;
      ParsePool(s, diag, &pool, &pool_nodes);
      config.pools.push_back(std::move(pool));
      nodes.push_back(pool_nodes);
    }
    CheckPools(config.pools, nodes, root);
  }

  if (absl::Status status = diag.ToStatus(source_name); !status.ok()) return status;
  return config;
}

bool AddUnit(uint64_t value, uint64_t multiplier, uint64_t* out) {
  if (multiplier != 0 && value > std::numeric_limits<uint64_t>::max() / multiplier) return false;
  *out = value * multiplier;
  return true;
}

}  // namespace

absl::StatusOr<uint64_t> ParseByteSize(std::string_view text) {
  constexpr std::string_view kAllowed =
      "an integer with an optional unit: B, K, KB, Ki, KiB, M, MB, Mi, MiB, G, GB, Gi, GiB, T, "
      "TB, Ti, TiB (e.g. \"4GiB\", \"512Mi\")";
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(text[digits])) ++digits;
  if (digits == 0) {
    return absl::InvalidArgumentError(
        Cat("invalid byte size ", Quoted(text), ": expected ", kAllowed));
  }
  uint64_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
      return absl::InvalidArgumentError(Cat("byte size ", Quoted(text), " is too large"));
    }
    value = value * 10 + digit;
  }
  std::string_view unit = text.substr(digits);
  static constexpr std::pair<std::string_view, uint64_t> kUnits[] = {
      {"", 1},
      {"B", 1},
      {"K", 1000},
      {"k", 1000},
      {"KB", 1000},
      {"kB", 1000},
      {"Ki", uint64_t{1} << 10},
      {"KiB", uint64_t{1} << 10},
      {"M", 1000 * 1000},
      {"MB", 1000 * 1000},
      {"Mi", uint64_t{1} << 20},
      {"MiB", uint64_t{1} << 20},
      {"G", 1000 * 1000 * 1000},
      {"GB", 1000 * 1000 * 1000},
      {"Gi", uint64_t{1} << 30},
      {"GiB", uint64_t{1} << 30},
      {"T", uint64_t{1000} * 1000 * 1000 * 1000},
      {"TB", uint64_t{1000} * 1000 * 1000 * 1000},
      {"Ti", uint64_t{1} << 40},
      {"TiB", uint64_t{1} << 40},
  };
  for (const auto& [name, multiplier] : kUnits) {
    if (unit != name) continue;
    uint64_t bytes = 0;
    if (!AddUnit(value, multiplier, &bytes)) {
      return absl::InvalidArgumentError(Cat("byte size ", Quoted(text), " is too large"));
    }
    return bytes;
  }
  return absl::InvalidArgumentError(Cat("invalid byte size ", Quoted(text), ": unknown unit ",
                                        Quoted(unit), "; expected ", kAllowed));
}

absl::StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        Cat("invalid duration ", Quoted(text), ": ", why,
            "; expected integers with units ms, s, m or h (e.g. \"60s\", \"500ms\", \"1m30s\")"));
  };
  if (text.empty()) return invalid("empty");
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  int64_t total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    int64_t value = 0;
    while (i < text.size() && absl::ascii_isdigit(text[i])) {
      int64_t digit = text[i] - '0';
      if (value > (kMax - digit) / 10) return invalid("too large");
      value = value * 10 + digit;
      ++i;
    }
    if (i == start) return invalid(Cat("expected a number at ", Quoted(text.substr(i))));
    size_t unit_start = i;
    while (i < text.size() && absl::ascii_isalpha(text[i])) ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    int64_t multiplier = 0;
    if (unit == "ms") {
      multiplier = 1;
    } else if (unit == "s") {
      multiplier = 1000;
    } else if (unit == "m") {
      multiplier = 60 * 1000;
    } else if (unit == "h") {
      multiplier = 60 * 60 * 1000;
    } else if (unit.empty()) {
      return invalid(Cat("missing unit after ", value));
    } else {
      return invalid(Cat("unknown unit ", Quoted(unit)));
    }
    if (value > kMax / multiplier || total_ms > kMax - value * multiplier) {
      return invalid("too large");
    }
    total_ms += value * multiplier;
  }
  return std::chrono::milliseconds(total_ms);
}

absl::StatusOr<Config> ParseConfig(std::string_view toml_text, std::string_view source_name) {
  try {
    toml::table document;
    try {
      document = toml::parse(toml_text, source_name);
    } catch (const toml::parse_error& error) {
      const toml::source_position& at = error.source().begin;
      return absl::InvalidArgumentError(
          Cat(source_name, ":", at.line, ":", at.column, ": syntax error: ", error.description()));
    }
    return Decode(document, source_name);
  } catch (const std::exception& error) {
    return absl::InternalError(
        Cat(source_name, ": unexpected error while reading the config: ", error.what()));
  }
}

absl::StatusOr<Config> LoadConfig(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  auto file_error = [&](std::string_view what) {
    int err = errno;
    std::string message = Cat("cannot ", what, " config file ", path, ": ", strerror(err));
    switch (err) {
      case ENOENT:
      case ENOTDIR:
        return absl::NotFoundError(message);
      case EACCES:
      case EPERM:
        return absl::PermissionDeniedError(message);
      default:
        return absl::UnavailableError(message);
    }
  };
  if (fd < 0) return file_error("open");
  std::string text;
  char buffer[16384];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status status = file_error("read");
      close(fd);
      return status;
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return ParseConfig(text, path);
}

std::string DefaultConfigText() { return std::string(embedded::kDefaultConfig); }

}  // namespace warmpool
