#pragma once

// warmpoolctl's output, apart from the command line and the connection so it
// can be tested without a server: tables for people, JSON for scripts, and
// the error lines.
//
// JSON field names are a contract with scripts: only ever added, never
// renamed. Ids are full, sizes are bytes (integers), times are RFC 3339 UTC
// (null when not set), durations are milliseconds.

#include <grpcpp/support/status.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "warmpool_admin.pb.h"

namespace warmpool::ctl {

// "0B", "512B", "1KiB", "12.3MiB", "4GiB".
std::string HumanBytes(uint64_t bytes);
// Coarse, like kubectl's AGE: "5s", "3m", "2h", "3d" (negative: "0s").
std::string HumanAge(std::chrono::nanoseconds age);
// A back-off delay: "-" (none), "500ms", "1.5s", "2m30s".
std::string HumanMillis(int64_t ms);
// An upstream id shortened like crictl does (13 characters).
std::string ShortId(const std::string& id);
// "2024-05-01T12:00:00.5Z" (fraction trimmed, like Go's RFC3339Nano); "" for 0.
std::string Rfc3339(int64_t unix_nanos);
// "creating", "warming", "frozen", "adopted", "destroying", "unknown".
std::string StateName(admin::v1::EntryState state);

// Aligned columns with a header, one line per pool / entry, ending in '\n'.
std::string FormatPoolsTable(const admin::v1::ListPoolsResponse& response);
// AGE is counted from `now`.
std::string FormatEntriesTable(const admin::v1::ListEntriesResponse& response,
                               std::chrono::system_clock::time_point now);
// Indented JSON objects {"pools": [...]} / {"entries": [...]}, ending in '\n'.
std::string FormatPoolsJson(const admin::v1::ListPoolsResponse& response);
std::string FormatEntriesJson(const admin::v1::ListEntriesResponse& response);

// `warmpoolctl explain POD`: the newest decision in full, with a hint for
// its reason, then earlier ones in a table; or why nothing is known. Times
// relative to `now`.
std::string FormatExplainTable(const std::string& pod, const admin::v1::ExplainResponse& response,
                               std::chrono::system_clock::time_point now);
// {"pod": ..., "found": ..., "decisions": [...], "log_since": ..., "log_capacity": ...}
std::string FormatExplainJson(const std::string& pod, const admin::v1::ExplainResponse& response);
// What to do about a miss of this reason code ("" for none known).
std::string ReasonHint(const std::string& reason_code);

// `warmpoolctl drain|fill POOL`: one line saying what happens now, or the
// pool object as `pools -o json` shows it.
std::string FormatDrainLine(const admin::v1::PoolStatus& pool);
std::string FormatFillLine(const admin::v1::PoolStatus& pool);
std::string FormatPoolJson(const admin::v1::PoolStatus& pool);

// The line to print (no '\n') when connecting to the admin socket at `path`
// failed with errno `err`.
std::string DescribeConnectError(const std::string& path, int err);
// The line to print (no '\n') when an admin call failed; `deadline` is the
// one the call had.
std::string DescribeRpcError(const std::string& path, const grpc::Status& status,
                             std::chrono::seconds deadline);

}  // namespace warmpool::ctl
