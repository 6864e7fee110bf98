// The crash-safe store of hand-off records: one file per adopted pod under
// the state directory (normally <state_dir>/adopted/), written before kubelet
// gets its answer, so that no pod's identity is lost across a warmpoold
// restart, a containerd restart or kill -9 at any point of a hand-off.
//
// On disk
// -------
//   <dir>/                   mode 0700, created by Open
//   <dir>/<sandbox_id>.rec   one committed record, mode 0600
//   <dir>/<sandbox_id>.<n>.tmp  a record being written (removed by Open)
//   <dir>/<file>.corrupt[.n] a record that failed its checks, moved aside
//
// A .rec file is a 16-byte header followed by the payload:
//   offset 0   4 bytes  magic "WPAR"
//   offset 4   u32 LE   format version (kStateFormatVersion)
//   offset 8   u32 LE   payload length in bytes
//   offset 12  u32 LE   CRC32C of bytes 4..12 of the header, then the payload
//   offset 16  payload  warmpool.state.v1.AdoptionRecord (proto/warmpool_state.proto)
// The file must be exactly 16 + length bytes long. The CRC covers the version
// and length too, so a flipped bit anywhere but the magic is caught by it.
//
// Put writes <sandbox_id>.<n>.tmp, fsyncs it, renames it over
// <sandbox_id>.rec and fsyncs the directory: after a crash at any point, the
// .rec is either the previous complete version or the new complete one.
//
// Open's verdict per file
// -----------------------
//   *.tmp                           removed (a crash before its rename)
//   <id>.rec, valid                 loaded
//   <id>.rec, bad magic/CRC/length,
//     truncated, payload undecodable,
//     sandbox_id != file name        moved to <id>.rec.corrupt, reported
//   <id>.rec, valid CRC but a format
//     version newer than this build  Open fails (FailedPrecondition): running
//                                    without those records could hand their
//                                    sandboxes out again; the file is kept
//   *.corrupt*                      left alone (already reported once)
//   anything else                   left alone, reported
// A reported record's sandbox may still exist upstream: recovery must treat
// that sandbox as adopted with an unknown kubelet identity, never as free.
//
// Only one StateStore may have a directory open: Open takes an exclusive
// flock on it (a second warmpoold on the same state fails FailedPrecondition).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace warmpool {

// One adopted pod: what kubelet asked for and what it got. Written before
// kubelet gets the answer.
struct AdoptionRecord {
  // How far the hand-off got (recovery completes or rolls back).
  enum class Phase { kClaimed, kMoved, kDone };

  // A pre-started container kubelet adopted.
  struct Container {
    std::string container_id;
    std::string template_name;
    std::string create_request;  // serialized CreateContainerRequest as kubelet sent it
    int64_t created_at_ns = 0;
    int64_t started_at_ns = 0;

    bool operator==(const Container&) const = default;
  };

  std::string sandbox_id;  // the upstream sandbox kubelet now owns (the key)
  std::string entry_id;
  std::string pool;
  std::string run_request;    // serialized runtime.v1.RunPodSandboxRequest as kubelet sent it
  int64_t adopted_at_ns = 0;  // hand-off time (becomes created_at in reads)
  std::string cgroup_parent;  // where the processes were moved
  std::string pod_ip;         // the IP reported (the network issue may change it)
  Phase phase = Phase::kClaimed;
  std::vector<Container> containers;              // pre-started containers kubelet adopted
  std::vector<std::string> unclaimed_containers;  // pre-started containers to remove
  std::string template_hash;  // the pool template the entry was made from

  // network = "late" (daemon/late_network.h): what CNI DEL needs, recorded
  // before the ADD runs; state kNone for early-network pools.
  struct LateNetwork {
    enum class State { kNone, kAdding, kAdded, kReleased };
    State state = State::kNone;
    std::string netns_path;
    std::string conflist;
    std::string cni_args;
    std::string capability_args;
    std::string ifname;
    std::string result;

    bool operator==(const LateNetwork&) const = default;
  };
  LateNetwork late_network;

  bool operator==(const AdoptionRecord&) const = default;
};

// "claimed", "moved", "done": for logs and warmpoolctl.
std::string_view PhaseName(AdoptionRecord::Phase phase);

// The current on-disk format version. Open refuses records of a newer one.
inline constexpr uint32_t kStateFormatVersion = 1;

// Largest payload Put writes and Open reads (a guard against a corrupt length).
inline constexpr size_t kMaxRecordBytes = size_t{64} << 20;

// OK when `id` can name a record file: 1..128 characters of [A-Za-z0-9_-],
// the first alphanumeric (containerd's sandbox ids are 64 hex digits). No '/',
// no '.', so never a path of its own. InvalidArgument otherwise.
absl::Status ValidateSandboxId(std::string_view id);

// CRC32C (Castagnoli), as in the record header; Crc32c("123456789") ==
// 0xE3069283. `crc` continues an earlier result.
uint32_t Crc32c(std::string_view data, uint32_t crc = 0);

// A file Open could not load, and what it did with it.
struct StateLoadProblem {
  std::string file;        // name within the directory, e.g. "<id>.rec"
  std::string sandbox_id;  // from the file name; "" if the name is not <id>.rec
  std::string moved_to;    // name it was moved aside to; "" if left in place
  std::string reason;

  bool operator==(const StateLoadProblem&) const = default;
};

// Thread-safe: every method may be called from any thread. Reads are served
// from an in-memory map that always equals the committed files: it changes
// in the same critical section as the rename or unlink.
class StateStore {
 public:
  // Creates `dir` (mode 0700; missing parents 0755) and loads every record,
  // as described at the top of this file. Fails on an I/O error, on a record
  // of a newer format, or when another StateStore has `dir` open.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::string& dir);

  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Atomic and durable: returns OK only once `r` is the committed record for
  // r.sandbox_id on disk (file and directory fsync'd). InvalidArgument for a
  // bad sandbox_id or an oversized record. On an error the previous record
  // stays on disk, except after a failed directory fsync: the new file has
  // then replaced it (Get returns it) but it is not known to be durable.
  // Concurrent Puts write and fsync in parallel; for one id, the last to
  // commit wins.
  //
  // kProcessCrash skips the fsyncs: the record survives a crash of warmpoold
  // (the page cache holds it) but maybe not a power loss. For records whose
  // loss on power failure is harmless (a claim about to be rolled back, a
  // container's start time), not for the record kubelet's answer depends on.
  enum class Durability { kPowerLoss, kProcessCrash };
  absl::Status Put(const AdoptionRecord& r, Durability durability = Durability::kPowerLoss);

  // Deletes the record (unlink + directory fsync). An unknown id is OK; an id
  // ValidateSandboxId refuses is InvalidArgument and touches nothing.
  absl::Status Remove(const std::string& sandbox_id);

  // The committed record, nullopt if none (or the id is invalid).
  std::optional<AdoptionRecord> Get(const std::string& sandbox_id) const;

  // Every committed record, ordered by sandbox_id.
  std::vector<AdoptionRecord> All() const;

  // The files Open could not load (each also logged at warn level).
  const std::vector<StateLoadProblem>& load_problems() const { return load_problems_; }

  const std::string& dir() const { return dir_; }

 private:
  StateStore(std::string dir, int dir_fd);
  absl::Status Load();

  const std::string dir_;
  const int dir_fd_;  // open for the store's lifetime: flock, *at() calls, fsync
  std::vector<StateLoadProblem> load_problems_;  // set by Open, then constant

  mutable std::mutex mu_;
  std::map<std::string, AdoptionRecord> records_;  // guarded by mu_
  uint64_t next_tmp_ = 0;                          // guarded by mu_
};

}  // namespace warmpool
