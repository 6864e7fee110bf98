#pragma once

// Comparing CRI answers from two endpoints (containerd direct, and through
// warmpoold): what differs between two otherwise identical pods (ids, names,
// uids, IPs, directories, times) is rewritten to placeholders, then the
// messages are compared field by field.

#include <google/protobuf/message.h>

#include <string>
#include <utility>
#include <vector>

namespace warmpool::testing {

// Pairs of (what occurs in this run's answers, placeholder). Applied longest
// first to every string field, map key and map value.
using Substitutions = std::vector<std::pair<std::string, std::string>>;

// Rewrites `msg` in place: every substitution applied to every string, and
// every time field (created_at, started_at, finished_at, timestamp, and
// CpuUsage/MemoryUsage/... timestamps) cleared. False (and `msg` untouched)
// if a substitution made the message unparsable.
[[nodiscard]] bool Normalise(google::protobuf::Message* msg, const Substitutions& subs);

// Clears every numeric scalar below `msg` (keeps which messages are present):
// for answers whose numbers are measurements, like ContainerStats.
void ClearNumbers(google::protobuf::Message* msg);

// "" when equal, else a readable field-by-field difference. Maps compare as
// maps; repeated fields in order.
std::string Diff(const google::protobuf::Message& want, const google::protobuf::Message& got);

// Like Diff, but repeated fields compare as sets (List* answers, whose order
// is the runtime's).
std::string DiffIgnoringOrder(const google::protobuf::Message& want,
                              const google::protobuf::Message& got);

}  // namespace warmpool::testing
