#include "daemon/ctl_format.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <vector>

namespace warmpool::ctl {
namespace {

using Json = nlohmann::ordered_json;  // fields in the order written here

// Longer errors are cut in tables; `-o json` has them whole.
constexpr size_t kTableErrorWidth = 60;
constexpr size_t kShortIdLength = 13;

using Row = std::vector<std::string>;

// Columns padded to their widest cell and separated by three spaces, like
// kubectl; the last column is not padded, so no line ends in blanks.
std::string RenderTable(const std::vector<Row>& rows) {
  std::vector<size_t> widths;
  for (const Row& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const Row& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line.append(3, ' ');
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size(), ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

// One line, at most kTableErrorWidth characters.
std::string TableError(const std::string& error) {
  std::string line = error;
  for (char& c : line) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (line.size() > kTableErrorWidth) line = line.substr(0, kTableErrorWidth - 3) + "...";
  return OrDash(line);
}

Json TimeOrNull(int64_t unix_nanos) {
  if (unix_nanos == 0) return nullptr;
  return Rfc3339(unix_nanos);
}

}  // namespace

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + "B";
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  // Move up while the value, rounded to one decimal, would show 1024 or more.
  while (value >= 1023.95 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", value);
  std::string number = buf;
  if (number.size() > 2 && number.compare(number.size() - 2, 2, ".0") == 0) {
    number.resize(number.size() - 2);
  }
  return number + kUnits[unit];
}

std::string HumanAge(std::chrono::nanoseconds age) {
  const int64_t s = std::chrono::duration_cast<std::chrono::seconds>(age).count();
  if (s < 0) return "0s";
  if (s < 60) return std::to_string(s) + "s";
  if (s < 60 * 60) return std::to_string(s / 60) + "m";
  if (s < 48 * 60 * 60) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

std::string HumanMillis(int64_t ms) {
  if (ms <= 0) return "-";
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (ms < 60 * 1000) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.1f", static_cast<double>(ms / 100) / 10);
    std::string number = buf;
    if (number.ends_with(".0")) number.resize(number.size() - 2);
    return number + "s";
  }
  const int64_t s = ms / 1000;
  if (s < 60 * 60) return std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s";
  return std::to_string(s / 3600) + "h" + std::to_string(s % 3600 / 60) + "m";
}

std::string ShortId(const std::string& id) { return id.substr(0, kShortIdLength); }

std::string Rfc3339(int64_t unix_nanos) {
  if (unix_nanos == 0) return "";
  constexpr int64_t kNanos = 1'000'000'000;
  int64_t seconds = unix_nanos / kNanos;
  int64_t fraction = unix_nanos % kNanos;
  if (fraction < 0) {
    fraction += kNanos;
    --seconds;
  }
  const time_t t = static_cast<time_t>(seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = buf;
  if (fraction != 0) {
    char frac[16];
    std::snprintf(frac, sizeof(frac), ".%09lld", static_cast<long long>(fraction));
    std::string f = frac;
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  return out + "Z";
}

std::string StateName(admin::v1::EntryState state) {
  switch (state) {
    case admin::v1::ENTRY_STATE_CREATING:
      return "creating";
    case admin::v1::ENTRY_STATE_WARMING:
      return "warming";
    case admin::v1::ENTRY_STATE_FROZEN:
      return "frozen";
    case admin::v1::ENTRY_STATE_ADOPTED:
      return "adopted";
    case admin::v1::ENTRY_STATE_DESTROYING:
      return "destroying";
    default:
      return "unknown";
  }
}

std::string FormatPoolsTable(const admin::v1::ListPoolsResponse& response) {
  if (response.pools().empty()) return "no pools configured\n";
  std::vector<Row> rows = {{"NAME", "TARGET", "FROZEN", "WARMING", "CREATING", "ADOPTED",
                            "FAILURES", "MEMORY", "BACKOFF", "LAST-ERROR"}};
  for (const admin::v1::PoolStatus& p : response.pools()) {
    const std::string name = p.draining()  ? p.name() + " (draining)"
                             : p.drained() ? p.name() + " (drained)"
                                           : p.name();
    rows.push_back(
        {name, std::to_string(p.target()), std::to_string(p.frozen()), std::to_string(p.warming()),
         std::to_string(p.creating()), std::to_string(p.adopted()), std::to_string(p.failures()),
         HumanBytes(p.memory_bytes()), HumanMillis(p.backoff_ms()), TableError(p.last_error())});
  }
  return RenderTable(rows);
}

std::string FormatEntriesTable(const admin::v1::ListEntriesResponse& response,
                               std::chrono::system_clock::time_point now) {
  if (response.entries().empty()) return "no entries\n";
  std::vector<Row> rows = {{"ID", "POOL", "STATE", "AGE", "SANDBOX", "IP", "MEMORY", "ERROR"}};
  const int64_t now_nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  for (const admin::v1::Entry& e : response.entries()) {
    const std::string age =
        e.created_at_unix_nanos() == 0
            ? "-"
            : HumanAge(std::chrono::nanoseconds(now_nanos - e.created_at_unix_nanos()));
    rows.push_back({e.id(), e.pool(), StateName(e.state()), age, OrDash(ShortId(e.sandbox_id())),
                    OrDash(e.pod_ip()), e.memory_bytes() == 0 ? "-" : HumanBytes(e.memory_bytes()),
                    TableError(e.last_error())});
  }
  return RenderTable(rows);
}

namespace {

Json PoolObject(const admin::v1::PoolStatus& p) {
  return {
      {"name", p.name()},
      {"target", p.target()},
      {"frozen", p.frozen()},
      {"warming", p.warming()},
      {"creating", p.creating()},
      {"adopted", p.adopted()},
      {"hits", p.hits()},
      {"failures", p.failures()},
      {"memory_bytes", p.memory_bytes()},
      {"backoff_ms", p.backoff_ms()},
      {"draining", p.draining()},
      {"last_error", p.last_error()},
      {"drained", p.drained()},
  };
}

std::string PodName(const admin::v1::Decision& d) { return d.namespace_() + "/" + d.name(); }

std::string Millis(int64_t micros) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f ms", static_cast<double>(micros) / 1000);
  return buf;
}

}  // namespace

std::string FormatPoolsJson(const admin::v1::ListPoolsResponse& response) {
  Json pools = Json::array();
  for (const admin::v1::PoolStatus& p : response.pools()) pools.push_back(PoolObject(p));
  Json out = {{"pools", std::move(pools)}};
  return out.dump(2) + "\n";
}

std::string FormatPoolJson(const admin::v1::PoolStatus& pool) {
  return PoolObject(pool).dump(2) + "\n";
}

std::string FormatDrainLine(const admin::v1::PoolStatus& p) {
  const int left = p.frozen() + p.warming() + p.creating();
  return "pool " + p.name() + " drained: " +
         (left == 0
              ? std::string("no entries left")
              : std::to_string(left) + (left == 1 ? " entry" : " entries") + " being removed") +
         "; it serves no pod and does not refill until: warmpoolctl fill " + p.name() + "\n";
}

std::string FormatFillLine(const admin::v1::PoolStatus& p) {
  return "pool " + p.name() + " filling: " + std::to_string(p.frozen()) + " of " +
         std::to_string(p.target()) + " frozen, " + std::to_string(p.warming() + p.creating()) +
         " being made\n";
}

std::string ReasonHint(const std::string& code) {
  if (code == "hit") return "";
  if (code == "no_pool") {
    return "the pod names no pool (annotation warmpool.io/pool) and no pool has default = true; "
           "annotate the pod to use a pool";
  }
  if (code == "unknown_pool") {
    return "the pod's warmpool.io/pool annotation names a pool that is not configured (see "
           "warmpoolctl pools)";
  }
  if (code == "namespace") return "the pool's namespaces list does not include the pod's namespace";
  if (code == "unknown_field") {
    return "kubelet sent a field this warmpoold does not know (a newer kubelet?); warmpool fails "
           "closed and the pod starts cold";
  }
  if (code == "runtime_handler" || code == "namespace_options" || code == "security_context" ||
      code == "sysctls" || code == "port_mappings" || code == "windows" || code == "template") {
    return "the pod asks for something the pool's entries were not made with; make the pool's "
           "[pool.sandbox] equal the pod's spec (or the pod's spec equal the pool)";
  }
  if (code == "image" || code == "env" || code == "command" || code == "args" ||
      code == "working_dir" || code == "stdin" || code == "tty" || code == "devices" ||
      code == "stop_signal") {
    return "the pod's container differs from the pool's [[pool.container]]; make them equal";
  }
  if (code == "app_pool") return "handing out app pools' pre-started containers is not built yet";
  if (code == "pool_empty") {
    return "the pool had no frozen entry at that moment; see warmpoolctl pools (size, failures, "
           "memory budget) and consider a larger size";
  }
  if (code == "handoff_failed") {
    return "the hand-off failed and was rolled back, so the pod started cold; see journalctl -u "
           "warmpool for the entry";
  }
  if (code == "passthrough") return "daemon.passthrough = true turns every pool off";
  return "";
}

std::string FormatExplainTable(const std::string& pod, const admin::v1::ExplainResponse& response,
                               std::chrono::system_clock::time_point now) {
  const int64_t now_nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  auto when = [&](int64_t at) {
    if (at == 0) return std::string("-");
    return Rfc3339(at) + " (" + HumanAge(std::chrono::nanoseconds(now_nanos - at)) + " ago)";
  };
  if (response.decisions().empty()) {
    return "no decision known for pod " + pod +
           ": warmpoold saw no RunPodSandbox for it since it started at " +
           when(response.log_since_unix_nanos()) + " (it remembers the last " +
           std::to_string(response.log_capacity()) +
           " decisions, and hits for as long as their pod exists); check the name "
           "(namespace/name or uid) and that kubelet talks to warmpoold\n";
  }
  const admin::v1::Decision& d = response.decisions(0);
  std::vector<Row> rows;
  rows.push_back({"POD:", PodName(d) + (d.uid().empty() ? "" : " (uid " + d.uid() + ")") +
                              ", attempt " + std::to_string(d.attempt())});
  if (d.hit()) {
    rows.push_back({"RESULT:", "hit: served by pool " + d.pool()});
    rows.push_back(
        {"ENTRY:", d.entry_id() + ", sandbox " + ShortId(d.sandbox_id()) +
                       (d.handoff_micros() > 0 ? ", handed over in " + Millis(d.handoff_micros())
                                               : std::string())});
  } else {
    rows.push_back({"RESULT:", "miss: started cold by containerd"});
    rows.push_back({"POOL:", OrDash(d.pool())});
    rows.push_back({"REASON:", d.reason() + " [" + d.reason_code() + "]"});
    if (std::string hint = ReasonHint(d.reason_code()); !hint.empty()) {
      rows.push_back({"HINT:", hint});
    }
  }
  rows.push_back({"WHEN:", when(d.decided_at_unix_nanos()) +
                               (d.source() == "record" ? ", from its hand-off record" : "")});
  std::string out = RenderTable(rows);
  if (response.decisions_size() > 1) {
    std::vector<Row> earlier = {{"WHEN", "ATTEMPT", "RESULT", "POOL", "REASON"}};
    for (int i = 1; i < response.decisions_size(); ++i) {
      const admin::v1::Decision& e = response.decisions(i);
      earlier.push_back({Rfc3339(e.decided_at_unix_nanos()), std::to_string(e.attempt()),
                         e.hit() ? "hit" : "miss", OrDash(e.pool()),
                         e.hit() ? "-" : TableError(e.reason_code() + ": " + e.reason())});
    }
    out += "\nearlier decisions about " + PodName(d) + ":\n" + RenderTable(earlier);
  }
  return out;
}

std::string FormatExplainJson(const std::string& pod, const admin::v1::ExplainResponse& response) {
  Json decisions = Json::array();
  for (const admin::v1::Decision& d : response.decisions()) {
    decisions.push_back({
        {"namespace", d.namespace_()},
        {"name", d.name()},
        {"uid", d.uid()},
        {"attempt", d.attempt()},
        {"hit", d.hit()},
        {"pool", d.pool()},
        {"reason_code", d.reason_code()},
        {"reason", d.reason()},
        {"decided_at", TimeOrNull(d.decided_at_unix_nanos())},
        {"entry_id", d.entry_id()},
        {"sandbox_id", d.sandbox_id()},
        {"handoff_ms", static_cast<double>(d.handoff_micros()) / 1000},
        {"source", d.source()},
    });
  }
  Json out = {
      {"pod", pod},
      {"found", !response.decisions().empty()},
      {"decisions", std::move(decisions)},
      {"log_since", TimeOrNull(response.log_since_unix_nanos())},
      {"log_capacity", response.log_capacity()},
  };
  return out.dump(2) + "\n";
}

std::string FormatEntriesJson(const admin::v1::ListEntriesResponse& response) {
  Json entries = Json::array();
  for (const admin::v1::Entry& e : response.entries()) {
    Json containers = Json::array();
    for (const std::string& id : e.container_ids()) containers.push_back(id);
    entries.push_back({
        {"id", e.id()},
        {"pool", e.pool()},
        {"state", StateName(e.state())},
        {"sandbox_id", e.sandbox_id()},
        {"container_ids", std::move(containers)},
        {"pod_ip", e.pod_ip()},
        {"created_at", TimeOrNull(e.created_at_unix_nanos())},
        {"state_since", TimeOrNull(e.state_since_unix_nanos())},
        {"memory_bytes", e.memory_bytes()},
        {"last_error", e.last_error()},
    });
  }
  Json out = {{"entries", std::move(entries)}};
  return out.dump(2) + "\n";
}

std::string DescribeConnectError(const std::string& path, int err) {
  std::string reason;
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      reason = "no such socket (is warmpoold running? see systemctl status warmpool)";
      break;
    case EACCES:
    case EPERM:
      reason = "permission denied (the admin socket is root only: run warmpoolctl as root)";
      break;
    case ENOTSOCK:
      reason = "not a socket (see --admin and [daemon] admin in /etc/warmpool.toml)";
      break;
    case ECONNREFUSED:
      reason =
          "connection refused, nothing listens on the socket (is warmpoold running? see "
          "systemctl status warmpool)";
      break;
    default:
      reason = std::strerror(err);
  }
  return "warmpoolctl: cannot reach warmpoold at " + path + ": " + reason;
}

std::string DescribeRpcError(const std::string& path, const grpc::Status& status,
                             std::chrono::seconds deadline) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return "warmpoolctl: cannot reach warmpoold at " + path + ": " + status.error_message() +
             " (is warmpoold running? see systemctl status warmpool)";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "warmpoolctl: warmpoold at " + path + " did not answer within " +
             std::to_string(deadline.count()) + "s (see journalctl -u warmpool)";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "warmpoolctl: warmpoold at " + path +
             " does not support this request (is it older than warmpoolctl?)";
    default:
      return "warmpoolctl: " + status.error_message();
  }
}

}  // namespace warmpool::ctl
