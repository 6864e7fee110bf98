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
    rows.push_back({p.draining() ? p.name() + " (draining)" : p.name(), std::to_string(p.target()),
                    std::to_string(p.frozen()), std::to_string(p.warming()),
                    std::to_string(p.creating()), std::to_string(p.adopted()),
                    std::to_string(p.failures()), HumanBytes(p.memory_bytes()),
                    HumanMillis(p.backoff_ms()), TableError(p.last_error())});
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

std::string FormatPoolsJson(const admin::v1::ListPoolsResponse& response) {
  Json pools = Json::array();
  for (const admin::v1::PoolStatus& p : response.pools()) {
    pools.push_back({
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
    });
  }
  Json out = {{"pools", std::move(pools)}};
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
