#include "daemon/state_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/log_format.h"
#include "spdlog/spdlog.h"
#include "warmpool_state.pb.h"

namespace warmpool {
namespace {

namespace fs = std::filesystem;
namespace pb = ::warmpool::state::v1;

#define WP_RETURN_IF_ERROR(expr) \
  do {                           \
    absl::Status _st = (expr);   \
    if (!_st.ok()) return _st;   \
  } while (0)

constexpr char kMagic[4] = {'W', 'P', 'A', 'R'};
constexpr size_t kHeaderBytes = 16;
constexpr char kRecSuffix[] = ".rec";
constexpr char kTmpSuffix[] = ".tmp";
constexpr char kCorruptSuffix[] = ".corrupt";

// ---- CRC32C (Castagnoli, reflected polynomial 0x82F63B78) -------------------

constexpr std::array<uint32_t, 256> MakeCrc32cTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = MakeCrc32cTable();

// ---- errors -----------------------------------------------------------------

absl::Status Errno(int err, absl::string_view what, absl::string_view path) {
  return absl::ErrnoToStatus(err, absl::StrCat(what, " ", path));
}

std::string Join(const std::string& dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

// ---- encoding ---------------------------------------------------------------

void PutU32(std::string& out, size_t offset, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[offset + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

uint32_t GetU32(std::string_view in, size_t offset) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(in[offset + i])} << (8 * i);
  return v;
}

// The CRC stored at offset 12: over the version and length, then the payload.
uint32_t RecordCrc(std::string_view file) {
  return Crc32c(file.substr(kHeaderBytes), Crc32c(file.substr(4, 8)));
}

pb::AdoptionRecord::Phase ToProto(AdoptionRecord::Phase phase) {
  switch (phase) {
    case AdoptionRecord::Phase::kClaimed:
      return pb::AdoptionRecord::PHASE_CLAIMED;
    case AdoptionRecord::Phase::kMoved:
      return pb::AdoptionRecord::PHASE_MOVED;
    case AdoptionRecord::Phase::kDone:
      return pb::AdoptionRecord::PHASE_DONE;
  }
  return pb::AdoptionRecord::PHASE_UNSPECIFIED;
}

std::optional<AdoptionRecord::Phase> FromProto(int phase) {
  switch (phase) {
    case pb::AdoptionRecord::PHASE_CLAIMED:
      return AdoptionRecord::Phase::kClaimed;
    case pb::AdoptionRecord::PHASE_MOVED:
      return AdoptionRecord::Phase::kMoved;
    case pb::AdoptionRecord::PHASE_DONE:
      return AdoptionRecord::Phase::kDone;
  }
  return std::nullopt;
}

// The whole file for `r`: header + payload.
absl::StatusOr<std::string> Encode(const AdoptionRecord& r) {
  pb::AdoptionRecord m;
  m.set_sandbox_id(r.sandbox_id);
  m.set_entry_id(r.entry_id);
  m.set_pool(r.pool);
  m.set_run_request(r.run_request);
  m.set_adopted_at_ns(r.adopted_at_ns);
  m.set_cgroup_parent(r.cgroup_parent);
  m.set_pod_ip(r.pod_ip);
  m.set_phase(ToProto(r.phase));
  for (const AdoptionRecord::Container& c : r.containers) {
    pb::AdoptionRecord::Container* mc = m.add_containers();
    mc->set_container_id(c.container_id);
    mc->set_template_name(c.template_name);
    mc->set_create_request(c.create_request);
    mc->set_created_at_ns(c.created_at_ns);
    mc->set_started_at_ns(c.started_at_ns);
  }
  for (const std::string& id : r.unclaimed_containers) m.add_unclaimed_containers(id);
  m.set_template_hash(r.template_hash);
  if (r.late_network.state != AdoptionRecord::LateNetwork::State::kNone) {
    const AdoptionRecord::LateNetwork& n = r.late_network;
    pb::AdoptionRecord::LateNetwork* mn = m.mutable_late_network();
    mn->set_state(static_cast<pb::AdoptionRecord::LateNetwork::State>(static_cast<int>(n.state)));
    mn->set_netns_path(n.netns_path);
    mn->set_conflist(n.conflist);
    mn->set_cni_args(n.cni_args);
    mn->set_capability_args(n.capability_args);
    mn->set_ifname(n.ifname);
    mn->set_result(n.result);
  }

  size_t size = m.ByteSizeLong();
  if (size > kMaxRecordBytes) {
    return absl::InvalidArgumentError(absl::StrCat("adoption record of sandbox ", r.sandbox_id,
                                                   " is ", size, " bytes, more than the limit ",
                                                   kMaxRecordBytes));
  }
  std::string file(kHeaderBytes + size, '\0');
  if (!m.SerializeToArray(file.data() + kHeaderBytes, static_cast<int>(size))) {
    return absl::InternalError(
        absl::StrCat("cannot serialize the adoption record of sandbox ", r.sandbox_id));
  }
  file.replace(0, 4, kMagic, 4);
  PutU32(file, 4, kStateFormatVersion);
  PutU32(file, 8, static_cast<uint32_t>(size));
  PutU32(file, 12, RecordCrc(file));
  return file;
}

// Decodes a whole file. DataLoss for anything torn or corrupt,
// FailedPrecondition for an intact record of a newer format.
absl::StatusOr<AdoptionRecord> Decode(std::string_view file, std::string_view expected_id) {
  if (file.size() < kHeaderBytes) {
    return absl::DataLossError(
        absl::StrCat("truncated: ", file.size(), " bytes, shorter than the header"));
  }
  if (file.substr(0, 4) != std::string_view(kMagic, 4)) {
    return absl::DataLossError("bad magic");
  }
  uint32_t version = GetU32(file, 4);
  uint32_t length = GetU32(file, 8);
  uint32_t crc = GetU32(file, 12);
  if (uint64_t{length} + kHeaderBytes != file.size()) {
    return absl::DataLossError(absl::StrCat("length mismatch: header says ", length,
                                            " payload bytes, file has ",
                                            file.size() - kHeaderBytes));
  }
  if (RecordCrc(file) != crc) return absl::DataLossError("checksum mismatch");
  if (version > kStateFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "format version ", version, " is newer than this warmpoold's (", kStateFormatVersion, ")"));
  }
  if (version == 0) return absl::DataLossError("format version 0");

  pb::AdoptionRecord m;
  if (!m.ParseFromArray(file.data() + kHeaderBytes, static_cast<int>(length))) {
    return absl::DataLossError("payload does not decode");
  }
  if (m.sandbox_id() != expected_id) {
    return absl::DataLossError(
        absl::StrCat("record is for sandbox '", m.sandbox_id(), "', not its file name's"));
  }
  std::optional<AdoptionRecord::Phase> phase = FromProto(m.phase());
  if (!phase) return absl::DataLossError(absl::StrCat("unknown phase ", m.phase()));

  AdoptionRecord r;
  r.sandbox_id = m.sandbox_id();
  r.entry_id = m.entry_id();
  r.pool = m.pool();
  r.run_request = m.run_request();
  r.adopted_at_ns = m.adopted_at_ns();
  r.cgroup_parent = m.cgroup_parent();
  r.pod_ip = m.pod_ip();
  r.phase = *phase;
  for (const pb::AdoptionRecord::Container& mc : m.containers()) {
    r.containers.push_back({.container_id = mc.container_id(),
                            .template_name = mc.template_name(),
                            .create_request = mc.create_request(),
                            .created_at_ns = mc.created_at_ns(),
                            .started_at_ns = mc.started_at_ns()});
  }
  r.unclaimed_containers.assign(m.unclaimed_containers().begin(), m.unclaimed_containers().end());
  r.template_hash = m.template_hash();
  if (m.has_late_network()) {
    const auto& mn = m.late_network();
    if (mn.state() < 0 || mn.state() > pb::AdoptionRecord::LateNetwork::STATE_RELEASED) {
      return absl::DataLossError(absl::StrCat("unknown late network state ", mn.state()));
    }
    AdoptionRecord::LateNetwork& n = r.late_network;
    n.state = static_cast<AdoptionRecord::LateNetwork::State>(static_cast<int>(mn.state()));
    n.netns_path = mn.netns_path();
    n.conflist = mn.conflist();
    n.cni_args = mn.cni_args();
    n.capability_args = mn.capability_args();
    n.ifname = mn.ifname();
    n.result = mn.result();
  }
  return r;
}

// ---- file I/O relative to the directory fd -----------------------------------

absl::Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, "write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadAll(int dir_fd, const std::string& name, const std::string& path) {
  int fd = openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Errno(errno, "open", path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return Errno(err, "stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::DataLossError("not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxRecordBytes + kHeaderBytes) {
    close(fd);
    return absl::DataLossError(absl::StrCat("file of ", st.st_size, " bytes is over the limit"));
  }
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = read(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return Errno(err, "read", path);
    }
    if (n == 0) break;  // shrank under us: whatever was read is judged as is
    done += static_cast<size_t>(n);
  }
  data.resize(done);
  close(fd);
  return data;
}

absl::Status FsyncFd(int fd, const std::string& path) {
  while (fsync(fd) != 0) {
    if (errno != EINTR) return Errno(errno, "fsync", path);
  }
  return absl::OkStatus();
}

absl::Status FsyncPath(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno(errno, "open", path);
  absl::Status st = FsyncFd(fd, path);
  close(fd);
  return st;
}

// Moves `name` aside to `name`.corrupt (or .corrupt.1, .2, ... so an earlier
// one is never overwritten) and returns the new name.
absl::StatusOr<std::string> MoveAside(int dir_fd, const std::string& dir, const std::string& name) {
  for (int n = 0; n < 1000; ++n) {
    std::string target = absl::StrCat(name, kCorruptSuffix);
    if (n > 0) absl::StrAppend(&target, ".", n);
    if (renameat2(dir_fd, name.c_str(), dir_fd, target.c_str(), RENAME_NOREPLACE) == 0) {
      return target;
    }
    if (errno != EEXIST) return Errno(errno, "rename", Join(dir, name));
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("too many ", kCorruptSuffix, " copies of ", Join(dir, name)));
}

}  // namespace

// ---- public helpers ---------------------------------------------------------

std::string_view PhaseName(AdoptionRecord::Phase phase) {
  switch (phase) {
    case AdoptionRecord::Phase::kClaimed:
      return "claimed";
    case AdoptionRecord::Phase::kMoved:
      return "moved";
    case AdoptionRecord::Phase::kDone:
      return "done";
  }
  return "unknown";
}

absl::Status ValidateSandboxId(std::string_view id) {
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  bool ok =
      !id.empty() && id.size() <= 128 && alnum(id[0]) &&
      std::all_of(id.begin(), id.end(), [&](char c) { return alnum(c) || c == '-' || c == '_'; });
  if (ok) return absl::OkStatus();
  std::string shown(id.substr(0, 80));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid sandbox id '", shown, "': want 1..128 of [A-Za-z0-9_-], starting alphanumeric"));
}

uint32_t Crc32c(std::string_view data, uint32_t crc) {
  crc = ~crc;
  for (char ch : data)
    crc = kCrc32cTable[(crc ^ static_cast<unsigned char>(ch)) & 0xff] ^ (crc >> 8);
  return ~crc;
}

// ---- StateStore -------------------------------------------------------------

StateStore::StateStore(std::string dir, int dir_fd) : dir_(std::move(dir)), dir_fd_(dir_fd) {}

StateStore::~StateStore() { close(dir_fd_); }  // also drops the flock

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("empty state directory");
  fs::path path(dir);
  std::error_code ec;
  if (path.has_parent_path() && path.parent_path() != path) {
    fs::create_directories(path.parent_path(), ec);
    if (ec) {
      return absl::ErrnoToStatus(ec.value(), absl::StrCat("create ", path.parent_path().string()));
    }
  }
  if (mkdir(dir.c_str(), 0700) == 0) {
    // A new directory entry is durable only once its parent is synced.
    std::string parent = path.has_parent_path() ? path.parent_path().string() : ".";
    WP_RETURN_IF_ERROR(FsyncPath(parent));
  } else if (errno != EEXIST) {
    return Errno(errno, "mkdir", dir);
  }

  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno(errno, "open", dir);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("state directory ", dir, " is in use by another warmpoold"));
    }
    return Errno(err, "flock", dir);
  }
  std::unique_ptr<StateStore> store(new StateStore(dir, fd));
  WP_RETURN_IF_ERROR(store->Load());
  return store;
}

absl::Status StateStore::Load() {
  std::vector<std::string> names;
  {
    int fd = dup(dir_fd_);
    if (fd < 0) return Errno(errno, "dup", dir_);
    DIR* d = fdopendir(fd);
    if (d == nullptr) {
      int err = errno;
      close(fd);
      return Errno(err, "opendir", dir_);
    }
    rewinddir(d);
    errno = 0;
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(std::move(name));
      errno = 0;
    }
    int err = errno;
    closedir(d);
    if (err != 0) return Errno(err, "readdir", dir_);
  }
  std::sort(names.begin(), names.end());

  bool changed = false;  // a file removed or moved: sync the directory once
  std::map<std::string, AdoptionRecord> records;
  for (const std::string& name : names) {
    std::string path = Join(dir_, name);
    if (absl::EndsWith(name, kTmpSuffix)) {
      if (unlinkat(dir_fd_, name.c_str(), 0) != 0 && errno != ENOENT) {
        return Errno(errno, "remove stale", path);
      }
      spdlog::info("state: removed {}, a record whose write was interrupted", path);
      changed = true;
      continue;
    }
    if (absl::StrContains(name, kCorruptSuffix)) continue;
    if (!absl::EndsWith(name, kRecSuffix)) {
      spdlog::warn("state: {} is not a record file; left alone", path);
      load_problems_.push_back({.file = name,
                                .sandbox_id = "",
                                .moved_to = "",
                                .reason = "not a record file; left alone"});
      continue;
    }
    std::string id = name.substr(0, name.size() - (sizeof kRecSuffix - 1));
    if (!ValidateSandboxId(id).ok()) {
      spdlog::warn("state: {} does not name a valid sandbox id; left alone", path);
      load_problems_.push_back({.file = name,
                                .sandbox_id = "",
                                .moved_to = "",
                                .reason = "file name is not a valid sandbox id; left alone"});
      continue;
    }

    absl::StatusOr<std::string> data = ReadAll(dir_fd_, name, path);
    absl::StatusOr<AdoptionRecord> record =
        data.ok() ? Decode(*data, id) : absl::StatusOr<AdoptionRecord>(data.status());
    if (record.ok()) {
      records.emplace(id, *std::move(record));
      continue;
    }
    if (record.status().code() == absl::StatusCode::kFailedPrecondition) {
      return absl::FailedPreconditionError(
          absl::StrCat("state record ", path, ": ", record.status().message(),
                       "; refusing to run without it (downgrade?)"));
    }
    if (record.status().code() != absl::StatusCode::kDataLoss) {
      return record.status();  // an I/O error, not a verdict on the file
    }
    absl::StatusOr<std::string> moved = MoveAside(dir_fd_, dir_, name);
    if (!moved.ok()) return moved.status();
    changed = true;
    spdlog::error("state: adoption record of sandbox {} is unreadable ({}); moved to {}", id,
                  record.status().message(), Join(dir_, *moved));
    load_problems_.push_back({.file = name,
                              .sandbox_id = id,
                              .moved_to = *moved,
                              .reason = std::string(record.status().message())});
  }
  if (changed) WP_RETURN_IF_ERROR(FsyncFd(dir_fd_, dir_));

  spdlog::info("state: {} adoption records loaded from {}, {} problems", records.size(), dir_,
               load_problems_.size());
  std::lock_guard<std::mutex> lock(mu_);
  records_ = std::move(records);
  return absl::OkStatus();
}

absl::Status StateStore::Put(const AdoptionRecord& r, Durability durability) {
  const bool sync = durability == Durability::kPowerLoss;
  WP_RETURN_IF_ERROR(ValidateSandboxId(r.sandbox_id));
  absl::StatusOr<std::string> file = Encode(r);
  if (!file.ok()) return file.status();

  uint64_t n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    n = next_tmp_++;
  }
  // A unique temporary name per Put, so Puts write and fsync in parallel; only
  // the rename and the map update are serialized.
  std::string tmp = absl::StrCat(r.sandbox_id, ".", n, kTmpSuffix);
  std::string rec = absl::StrCat(r.sandbox_id, kRecSuffix);
  std::string tmp_path = Join(dir_, tmp);

  int fd = openat(dir_fd_, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Errno(errno, "create", tmp_path);
  absl::Status st = WriteAll(fd, *file, tmp_path);
  if (st.ok() && sync) st = FsyncFd(fd, tmp_path);
  if (close(fd) != 0 && st.ok()) st = Errno(errno, "close", tmp_path);
  if (!st.ok()) {
    unlinkat(dir_fd_, tmp.c_str(), 0);
    return st;
  }

  {
    std::lock_guard<std::mutex> lock(mu_);
    if (renameat(dir_fd_, tmp.c_str(), dir_fd_, rec.c_str()) != 0) {
      int err = errno;
      unlinkat(dir_fd_, tmp.c_str(), 0);
      return Errno(err, "rename", tmp_path);
    }
    records_[r.sandbox_id] = r;
  }
  return sync ? FsyncFd(dir_fd_, dir_) : absl::OkStatus();
}

absl::Status StateStore::Remove(const std::string& sandbox_id) {
  WP_RETURN_IF_ERROR(ValidateSandboxId(sandbox_id));
  std::string rec = absl::StrCat(sandbox_id, kRecSuffix);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (unlinkat(dir_fd_, rec.c_str(), 0) != 0) {
      if (errno != ENOENT) return Errno(errno, "remove", Join(dir_, rec));
      records_.erase(sandbox_id);
      return absl::OkStatus();
    }
    records_.erase(sandbox_id);
  }
  return FsyncFd(dir_fd_, dir_);
}

std::optional<AdoptionRecord> StateStore::Get(const std::string& sandbox_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = records_.find(sandbox_id);
  if (it == records_.end()) return std::nullopt;
  return it->second;
}

std::vector<AdoptionRecord> StateStore::All() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<AdoptionRecord> all;
  all.reserve(records_.size());
  for (const auto& [id, record] : records_) all.push_back(record);
  return all;
}

}  // namespace warmpool
