#include "daemon/cgroups.h"

#include <errno.h>
#include <fcntl.h>
#include <libcgroup.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace warmpool {
namespace {

namespace fs = std::filesystem;

#define WP_RETURN_IF_ERROR(expr) \
  do {                           \
    absl::Status _st = (expr);   \
    if (!_st.ok()) return _st;   \
  } while (0)

// ---- libcgroup: one init, one lock ------------------------------------------
//
// libcgroup keeps its mount table and error state in globals; the table is
// behind a rwlock but the rest (iterators, cgroup structs shared with the
// mount table, cgroup_init re-reading mounts) is not safe to run
// concurrently. Every libcgroup call of this process goes through LibcgLock.

std::mutex& LibcgMutex() {
  static std::mutex* mu = new std::mutex;
  return *mu;
}

struct LibcgInit {
  int rc = 0;
  int err = 0;
};

const LibcgInit& InitLibcgroupOnce() {
  static std::once_flag once;
  static LibcgInit init;
  std::call_once(once, [] {
    std::lock_guard<std::mutex> lock(LibcgMutex());
    init.rc = cgroup_init();
    init.err = init.rc == ECGOTHER ? cgroup_get_last_errno() : 0;
  });
  return init;
}

// Text for a libcgroup return code. Call with LibcgMutex held, right after the
// failing call (ECGOTHER's errno is libcgroup's thread-local last_errno).
//
// libcgroup 2.0.2's cgroup_strerror() is only right for codes below ECGEOF:
// its message table has no slot for the unused code 50022, so from ECGEOF
// (50023) on every message is the next code's, and ECGNONEMPTY (50030) reads
// past the table and crashes (checked here: cgroup_strerror(50030) segfaults).
// Codes from 50022 on are therefore named here.
std::string LibcgError(int rc) {
  if (rc == ECGOTHER) {
    int err = cgroup_get_last_errno();
    return absl::StrCat("libcgroup error ", rc, " (ECGOTHER): ", strerror(err));
  }
  if (rc >= ECGROUPNOTCOMPILED && rc < 50022) {
    return absl::StrCat("libcgroup error ", rc, ": ", cgroup_strerror(rc));
  }
  const char* name = "unknown";
  switch (rc) {
    case ECGEOF:
      name = "ECGEOF";
      break;
    case ECGCONFIGPARSEFAIL:
      name = "ECGCONFIGPARSEFAIL";
      break;
    case ECGNAMESPACEPATHS:
      name = "ECGNAMESPACEPATHS";
      break;
    case ECGNAMESPACECONTROLLER:
      name = "ECGNAMESPACECONTROLLER";
      break;
    case ECGMOUNTNAMESPACE:
      name = "ECGMOUNTNAMESPACE";
      break;
    case ECGROUPUNSUPP:
      name = "ECGROUPUNSUPP";
      break;
    case ECGCANTSETVALUE:
      name = "ECGCANTSETVALUE";
      break;
    case ECGNONEMPTY:
      name = "ECGNONEMPTY (group not empty)";
      break;
  }
  return absl::StrCat("libcgroup error ", rc, " (", name, ")");
}

// A missing cgroup or control file is kNotFound; everything else kInternal.
absl::StatusCode LibcgCode(int rc) {
  if (rc == ECGROUPNOTEXIST || rc == ECGROUPVALUENOTEXIST) return absl::StatusCode::kNotFound;
  if (rc == ECGOTHER && cgroup_get_last_errno() == ENOENT) return absl::StatusCode::kNotFound;
  return absl::StatusCode::kInternal;
}

absl::StatusCode ErrnoCode(int err) {
  switch (err) {
    case ENOENT:
      return absl::StatusCode::kNotFound;
    case EBUSY:
    case ENOTEMPTY:
      return absl::StatusCode::kFailedPrecondition;
    case EACCES:
    case EPERM:
      return absl::StatusCode::kPermissionDenied;
    case EINVAL:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kInternal;
  }
}

std::string Trim(absl::string_view s) { return std::string(absl::StripAsciiWhitespace(s)); }

// "/a/b" -> ok; "", "a", "/a/../b", "/a//b" -> InvalidArgument.
absl::Status ValidatePath(const std::string& path, bool allow_root) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("cgroup path \"", path, "\" must be absolute (start with '/')"));
  }
  if (path == "/") {
    if (allow_root) return absl::OkStatus();
    return absl::InvalidArgumentError("refusing to operate on the root cgroup \"/\"");
  }
  for (absl::string_view part : absl::StrSplit(absl::string_view(path).substr(1), '/')) {
    if (part.empty() || part == "." || part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("cgroup path \"", path, "\" has an empty, '.' or '..' component"));
    }
  }
  return absl::OkStatus();
}

bool IsOctal(char c) { return c >= '0' && c <= '7'; }

// Decodes mountinfo's octal escapes (\040 for space, \011, \012, \134).
std::string UnescapeMountinfo(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && IsOctal(s[i + 1]) && IsOctal(s[i + 2]) &&
        IsOctal(s[i + 3])) {
      out.push_back(
          static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Super options of a v1 cgroup mount that are not controllers.
bool IsV1MountOption(absl::string_view opt) {
  static const std::set<absl::string_view> kOptions = {"rw",           "ro",
                                                       "noprefix",     "clone_children",
                                                       "xattr",        "cpuset_v2_mode",
                                                       "favordynmods", "nofavordynmods",
                                                       "none"};
  return kOptions.count(opt) > 0 || absl::StartsWith(opt, "release_agent=");
}

std::string NormalizeDir(const std::string& dir) {
  std::string out = fs::path(dir).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

bool SameDir(const std::string& a, const std::string& b) {
  if (NormalizeDir(a) == NormalizeDir(b)) return true;
  struct stat sa, sb;
  return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

absl::StatusOr<uint64_t> ParseU64(const std::string& text, const std::string& what) {
  uint64_t v = 0;
  if (!absl::SimpleAtoi(Trim(text), &v)) {
    return absl::InternalError(absl::StrCat(what, ": not a number: \"", Trim(text), "\""));
  }
  return v;
}

// The value of `key` in a flat-keyed file ("key value" per line).
std::optional<std::string> KeyedValue(const std::string& text, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    if (kv.first == key) return Trim(kv.second);
  }
  return std::nullopt;
}

// Every cgroup directory of the subtree rooted at `root`, root first, parents
// before children. A directory that vanishes during the walk is skipped.
//
// Direct directory listing, not libcgroup's cgroup_walk_tree_*: libcgroup 2.0
// documents its walk iterators as able to leave a handle that segfaults in
// cgroup_walk_tree_end(), and they only reach hierarchies libcgroup knows.
absl::StatusOr<std::vector<std::string>> SubtreeDirs(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat(root, ": no such cgroup"));
  }
  std::vector<std::string> dirs = {root};
  for (size_t i = 0; i < dirs.size(); ++i) {
    fs::directory_iterator it(dirs[i], ec);
    if (ec) {
      if (ec == std::errc::no_such_file_or_directory) continue;
      return absl::InternalError(absl::StrCat("listing ", dirs[i], ": ", ec.message()));
    }
    for (const fs::directory_entry& entry : it) {
      std::error_code type_ec;
      if (entry.is_directory(type_ec) && !entry.is_symlink(type_ec)) {
        dirs.push_back(entry.path().string());
      }
    }
  }
  return dirs;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& file) {
  int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return absl::Status(ErrnoCode(err), absl::StrCat("reading ", file, ": ", strerror(err)));
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return absl::Status(ErrnoCode(err), absl::StrCat("reading ", file, ": ", strerror(err)));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

absl::Status WriteWholeFile(const std::string& file, const std::string& value) {
  int fd = open(file.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return absl::Status(ErrnoCode(err), absl::StrCat("writing ", file, ": ", strerror(err)));
  }
  ssize_t n = write(fd, value.data(), value.size());
  int err = n < 0 ? errno : 0;
  if (close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    return absl::Status(ErrnoCode(err),
                        absl::StrCat("writing \"", value, "\" to ", file, ": ", strerror(err)));
  }
  if (static_cast<size_t>(n) != value.size()) {
    return absl::InternalError(absl::StrCat("short write to ", file));
  }
  return absl::OkStatus();
}

std::vector<pid_t> ParsePids(const std::string& text) {
  std::vector<pid_t> pids;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    int pid = 0;
    if (absl::SimpleAtoi(line, &pid) && pid > 0) pids.push_back(pid);
  }
  return pids;
}

}  // namespace

// ---- CgroupLayout -------------------------------------------------------------

std::string SlowCgroupMoveAdvice(const CgroupLayout& layout, const std::string& kernel_release) {
  if (layout.favordynmods) return "";
  int major = 0;
  int minor = 0;
  if (std::sscanf(kernel_release.c_str(), "%d.%d", &major, &minor) != 2) return "";
  if (major < 6) return "";  // the kernel keeps the rwsem's readers on the slow path
  std::string remount;
  if (!layout.unified.empty()) {
    remount = absl::StrCat(" or `mount -o remount,favordynmods,<its current options> ",
                           layout.unified, "`");
  }
  return absl::StrCat(
      "no cgroup mount has favordynmods (kernel ", kernel_release,
      "): each hand-off waits one RCU grace period, 4-16 ms, to move its processes; boot with "
      "cgroup_favordynmods=true (Linux 6.7+)",
      remount, " to make moves take microseconds (README: Node tuning)");
}

absl::StatusOr<CgroupLayout> CgroupLayout::Detect(const std::string& mountinfo_path) {
  std::ifstream in(mountinfo_path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", mountinfo_path, ": ", strerror(errno)));
  }
  // controller -> (mount point, root was "/"); unified likewise.
  std::map<std::string, std::pair<std::string, bool>> v1;
  std::pair<std::string, bool> unified{"", false};
  bool favordynmods = false;
  std::string line;
  while (std::getline(in, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    auto dash = std::find(f.begin(), f.end(), absl::string_view("-"));
    if (f.size() < 5 || dash == f.end() || f.end() - dash < 4) continue;
    absl::string_view fstype = dash[1];
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    bool root_is_slash = f[3] == "/";
    std::string mount = UnescapeMountinfo(f[4]);
    auto better = [&](const std::pair<std::string, bool>& have) {
      return have.first.empty() || (!have.second && root_is_slash);
    };
    const std::vector<absl::string_view> super_options =
        absl::StrSplit(dash[3], ',', absl::SkipEmpty());
    if (std::find(super_options.begin(), super_options.end(), "favordynmods") !=
        super_options.end()) {
      favordynmods = true;
    }
    if (fstype == "cgroup2") {
      if (better(unified)) unified = {mount, root_is_slash};
      continue;
    }
    for (absl::string_view opt : super_options) {
      if (IsV1MountOption(opt)) continue;
      auto& have = v1[std::string(opt)];
      if (better(have)) have = {mount, root_is_slash};
    }
  }
  if (in.bad()) {
    return absl::InternalError(absl::StrCat("reading ", mountinfo_path, ": ", strerror(errno)));
  }
  CgroupLayout layout;
  for (auto& [controller, where] : v1) layout.v1[controller] = where.first;
  layout.unified = unified.first;
  layout.favordynmods = favordynmods;
  if (layout.v1.empty() && layout.unified.empty()) {
    return absl::NotFoundError(absl::StrCat("no cgroup or cgroup2 mount in ", mountinfo_path));
  }
  return layout;
}

std::vector<std::string> CgroupLayout::MountPoints() const {
  std::vector<std::string> out;
  for (const auto& [controller, mount] : v1) {
    if (std::find(out.begin(), out.end(), mount) == out.end()) out.push_back(mount);
  }
  if (!unified.empty() && std::find(out.begin(), out.end(), unified) == out.end()) {
    out.push_back(unified);
  }
  return out;
}

// ---- Cgroups: setup -----------------------------------------------------------

Cgroups::Cgroups(CgroupLayout layout) : layout_(std::move(layout)) {
  const LibcgInit& init = InitLibcgroupOnce();
  std::lock_guard<std::mutex> lock(LibcgMutex());

  // v1: one Hierarchy per mount point; libcgroup addresses it by any of its
  // controllers that libcgroup has mounted at the same place. Named
  // hierarchies (name=systemd) are not in libcgroup 2.0's table at all.
  std::map<std::string, size_t> by_mount;
  for (const auto& [controller, mount] : layout_.v1) {
    auto [it, inserted] = by_mount.emplace(mount, hierarchies_.size());
    if (inserted) hierarchies_.push_back(Hierarchy{controller, mount, "", false});
    Hierarchy& h = hierarchies_[it->second];
    if (!inserted) absl::StrAppend(&h.label, ",", controller);
    by_controller_[controller] = it->second;
    if (init.rc != 0 || !h.libcg.empty() || absl::StartsWith(controller, "name=")) continue;
    char* mp = nullptr;
    if (cgroup_get_subsys_mount_point(controller.c_str(), &mp) == 0 && mp != nullptr) {
      if (SameDir(mp, mount)) h.libcg = controller;
    }
    free(mp);
  }

  // cgroup2: libcgroup 2.0 records a cgroup2 mount only under the names of
  // the controllers listed in its root's cgroup.controllers (it skips the
  // mount when that file is empty). Any one of them addresses the whole
  // hierarchy, including the core files cgroup.freeze/cgroup.events/
  // cgroup.procs; a named controller (rather than libcgroup's "cgroup"
  // pseudo-controller, which means "the first v2 mount in the table") keeps
  // that unambiguous when cgroup2 is mounted more than once.
  if (!layout_.unified.empty()) {
    size_t index = hierarchies_.size();
    hierarchies_.push_back(Hierarchy{"unified", layout_.unified, "", true});
    by_controller_["unified"] = index;
    if (init.rc == 0) {
      void* handle = nullptr;
      struct cgroup_mount_point mp;
      int rc = cgroup_get_controller_begin(&handle, &mp);
      while (rc == 0) {
        if (SameDir(mp.path, layout_.unified)) {
          hierarchies_[index].libcg = mp.name;
          break;
        }
        rc = cgroup_get_controller_next(&handle, &mp);
      }
      if (handle != nullptr) cgroup_get_controller_end(&handle);
    }
  }

  if (layout_.v2_only()) {
    freezer_version_ = CgroupVersion::kV2;
  } else if (layout_.v1.count("freezer") > 0) {
    freezer_version_ = CgroupVersion::kV1;
  } else {
    freezer_version_ = CgroupVersion::kV2;
  }
}

absl::Status Cgroups::init_status() const {
  const LibcgInit& init = InitLibcgroupOnce();
  if (init.rc == 0) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(LibcgMutex());
  return absl::UnavailableError(absl::StrCat(
      "cgroup_init: ",
      init.rc == ECGOTHER ? absl::StrCat("ECGOTHER: ", strerror(init.err)) : LibcgError(init.rc)));
}

bool Cgroups::UsesLibcgroup(const std::string& controller) const {
  const Hierarchy* h = Find(controller);
  return h != nullptr && !h->libcg.empty();
}

std::string Cgroups::DescribeBackends() const {
  std::vector<std::string> parts;
  for (const Hierarchy& h : hierarchies_) {
    parts.push_back(
        absl::StrCat(h.label, "@", h.mount, "=",
                     h.libcg.empty() ? "file-io" : absl::StrCat("libcgroup(", h.libcg, ")")));
  }
  return absl::StrJoin(parts, " ");
}

const Cgroups::Hierarchy* Cgroups::Find(const std::string& controller) const {
  auto it = by_controller_.find(controller);
  return it == by_controller_.end() ? nullptr : &hierarchies_[it->second];
}

absl::StatusOr<const Cgroups::Hierarchy*> Cgroups::FreezerHierarchy() const {
  const char* key = freezer_version_ == CgroupVersion::kV1 ? "freezer" : "unified";
  const Hierarchy* h = Find(key);
  if (h == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(freezer_version_ == CgroupVersion::kV1 ? "cgroup v1 freezer" : "cgroup2",
                     " is not mounted"));
  }
  return h;
}

std::string Cgroups::FsPath(const Hierarchy& h, const std::string& path) const {
  std::string out = NormalizeDir(h.mount);
  if (path != "/") absl::StrAppend(&out, path);
  return out;
}

// ---- Cgroups: control files ---------------------------------------------------

absl::StatusOr<std::string> Cgroups::ReadFileIo(const Hierarchy& h, const std::string& path,
                                                const std::string& file) const {
  absl::StatusOr<std::string> text = ReadWholeFile(absl::StrCat(FsPath(h, path), "/", file));
  if (!text.ok()) {
    return absl::Status(
        text.status().code(),
        absl::StrCat("cgroup ", path, " (", h.label, ", file I/O): ", text.status().message()));
  }
  return text;
}

absl::Status Cgroups::WriteFileIo(const Hierarchy& h, const std::string& path,
                                  const std::string& file, const std::string& value) const {
  absl::Status st = WriteWholeFile(absl::StrCat(FsPath(h, path), "/", file), value);
  if (!st.ok()) {
    return absl::Status(
        st.code(), absl::StrCat("cgroup ", path, " (", h.label, ", file I/O): ", st.message()));
  }
  return st;
}

absl::StatusOr<std::string> Cgroups::ReadFile(const Hierarchy& h, const std::string& path,
                                              const std::string& file) const {
  if (h.libcg.empty()) return ReadFileIo(h, path, file);
  std::lock_guard<std::mutex> lock(LibcgMutex());
  std::string name = file;  // cgroup_read_value_begin takes a mutable name.
  void* handle = nullptr;
  char buf[4096];
  std::string out;
  int rc = cgroup_read_value_begin(h.libcg.c_str(), path.c_str(), name.data(), &handle, buf,
                                   sizeof(buf));
  while (rc == 0) {
    out += buf;
    rc = cgroup_read_value_next(&handle, buf, sizeof(buf));
  }
  // cgroup_read_value_end fcloses without a NULL check: only call it on an
  // open handle (begin leaves it NULL when the open failed).
  if (handle != nullptr) cgroup_read_value_end(&handle);
  if (rc != ECGEOF) {
    return absl::Status(LibcgCode(rc),
                        absl::StrCat("reading ", file, " of cgroup ", path, " (", h.label,
                                     ", libcgroup controller ", h.libcg, "): ", LibcgError(rc)));
  }
  return out;
}

absl::Status Cgroups::WriteFile(const Hierarchy& h, const std::string& path,
                                const std::string& file, const std::string& value) const {
  if (h.libcg.empty()) return WriteFileIo(h, path, file, value);
  std::lock_guard<std::mutex> lock(LibcgMutex());
  auto fail = [&](const std::string& what, int rc) {
    return absl::Status(
        LibcgCode(rc),
        absl::StrCat(what, " \"", value, "\" to ", file, " of cgroup ", path, " (", h.label,
                     ", libcgroup controller ", h.libcg, "): ", LibcgError(rc)));
  };
  struct cgroup* cg = cgroup_new_cgroup(path.c_str());
  if (cg == nullptr)
    return absl::InternalError(absl::StrCat("cgroup_new_cgroup(", path, ") failed"));
  absl::Status status;
  struct cgroup_controller* ctrl = cgroup_add_controller(cg, h.libcg.c_str());
  int rc = ctrl == nullptr ? ECGINVAL : cgroup_add_value_string(ctrl, file.c_str(), value.c_str());
  if (rc != 0) {
    status = fail("cgroup_add_value_string", rc);
  } else if ((rc = cgroup_modify_cgroup(cg)) != 0) {
    status = fail("cgroup_modify_cgroup writing", rc);
  }
  cgroup_free(&cg);
  return status;
}

absl::StatusOr<std::vector<pid_t>> Cgroups::Procs(const Hierarchy& h,
                                                  const std::string& path) const {
  // File I/O in every hierarchy: see MoveProcs.
  absl::StatusOr<std::string> text = ReadFileIo(h, path, "cgroup.procs");
  if (!text.ok()) return text.status();
  return ParsePids(*text);
}

// ---- Cgroups: freezer ---------------------------------------------------------

absl::StatusOr<std::string> Cgroups::FreezerState(const Hierarchy& h,
                                                  const std::string& path) const {
  if (!h.v2) {
    absl::StatusOr<std::string> state = ReadFile(h, path, "freezer.state");
    if (!state.ok()) return state.status();
    return Trim(*state);  // THAWED, FREEZING or FROZEN.
  }
  absl::StatusOr<std::string> events = ReadFile(h, path, "cgroup.events");
  if (!events.ok()) return events.status();
  std::optional<std::string> frozen = KeyedValue(*events, "frozen");
  if (!frozen) {
    return absl::InternalError(
        absl::StrCat("cgroup ", path, ": cgroup.events has no \"frozen\" key (kernel < 5.2?)"));
  }
  return absl::StrCat("frozen ", *frozen);
}

absl::Status Cgroups::SetFrozen(const std::string& path, bool frozen) {
  WP_RETURN_IF_ERROR(ValidatePath(path, /*allow_root=*/false));
  absl::StatusOr<const Hierarchy*> hs = FreezerHierarchy();
  if (!hs.ok()) return hs.status();
  const Hierarchy& h = **hs;
  const std::string file = h.v2 ? "cgroup.freeze" : "freezer.state";
  const std::string value = h.v2 ? (frozen ? "1" : "0") : (frozen ? "FROZEN" : "THAWED");
  const std::string want = h.v2 ? (frozen ? "frozen 1" : "frozen 0") : value;

  WP_RETURN_IF_ERROR(WriteFile(h, path, file, value));

  // Poll the kernel's view with growing intervals: freezing usually completes
  // within microseconds, but a task in an uninterruptible sleep delays it.
  // While v1 reports FREEZING the write is repeated every 10 ms, which makes
  // the kernel retry the tasks it could not freeze yet, and every 50 ms the
  // cgroup is thawed for a moment first: v1 can stay FREEZING for good when
  // it raced a fork, and only a thaw unsticks it (runc does the same). We saw
  // this on a loaded 2-core VM: FREEZING for the whole 2 s without the thaw.
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + state_timeout_;
  Clock::time_point last_write = Clock::now();
  Clock::time_point last_thaw = last_write;
  std::chrono::microseconds interval(20);
  std::string state;
  for (;;) {
    absl::StatusOr<std::string> current = FreezerState(h, path);
    if (!current.ok()) return current.status();
    state = *current;
    if (state == want) return absl::OkStatus();
    Clock::time_point now = Clock::now();
    if (now >= deadline) break;
    if (!h.v2 && frozen && now - last_write >= std::chrono::milliseconds(10)) {
      if (now - last_thaw >= std::chrono::milliseconds(50)) {
        WP_RETURN_IF_ERROR(WriteFile(h, path, file, "THAWED"));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        last_thaw = Clock::now();
      }
      WP_RETURN_IF_ERROR(WriteFile(h, path, file, value));
      last_write = Clock::now();
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(interval, deadline - now));
    interval = std::min<std::chrono::microseconds>(interval * 2, std::chrono::milliseconds(5));
  }

  std::string message = absl::StrCat(frozen ? "freezing" : "thawing", " cgroup ", path, " (",
                                     h.label, "): the kernel still reports \"", state, "\" after ",
                                     state_timeout_.count(), " ms, wanted \"", want, "\"");
  if (frozen) {
    // Leave no half-frozen entry behind: undo the freeze request.
    absl::Status undo = WriteFile(h, path, file, h.v2 ? "0" : "THAWED");
    absl::StrAppend(&message, undo.ok()
                                  ? "; thawed it again"
                                  : absl::StrCat("; thawing it again failed: ", undo.message()));
  } else if (!h.v2) {
    absl::StrAppend(&message, " (is an ancestor frozen?)");
  }
  return absl::DeadlineExceededError(message);
}

absl::Status Cgroups::Freeze(const std::string& path) { return SetFrozen(path, true); }

absl::Status Cgroups::Thaw(const std::string& path) { return SetFrozen(path, false); }

absl::StatusOr<bool> Cgroups::IsFrozen(const std::string& path) {
  WP_RETURN_IF_ERROR(ValidatePath(path, /*allow_root=*/true));
  absl::StatusOr<const Hierarchy*> h = FreezerHierarchy();
  if (!h.ok()) return h.status();
  absl::StatusOr<std::string> state = FreezerState(**h, path);
  if (!state.ok()) return state.status();
  return *state == ((*h)->v2 ? "frozen 1" : "FROZEN");
}

// ---- Cgroups: tasks and usage ---------------------------------------------------

absl::StatusOr<std::vector<pid_t>> Cgroups::Pids(const std::string& path) {
  WP_RETURN_IF_ERROR(ValidatePath(path, /*allow_root=*/true));
  absl::StatusOr<const Hierarchy*> hs = FreezerHierarchy();
  if (!hs.ok()) return hs.status();
  const Hierarchy& h = **hs;
  const std::string base = FsPath(h, path);
  absl::StatusOr<std::vector<std::string>> dirs = SubtreeDirs(base);
  if (!dirs.ok()) {
    return absl::Status(dirs.status().code(), absl::StrCat("cgroup ", path, " (", h.label,
                                                           "): ", dirs.status().message()));
  }
  std::vector<pid_t> all;
  for (const std::string& dir : *dirs) {
    std::string cgroup_path = path;
    if (dir.size() > base.size()) {
      cgroup_path = path == "/" ? dir.substr(base.size()) : path + dir.substr(base.size());
    }
    absl::StatusOr<std::vector<pid_t>> pids = Procs(h, cgroup_path);
    if (!pids.ok()) {
      // A child removed since the listing has no tasks to report.
      if (pids.status().code() == absl::StatusCode::kNotFound && dir != base) continue;
      return pids.status();
    }
    all.insert(all.end(), pids->begin(), pids->end());
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  return all;
}

absl::StatusOr<uint64_t> Cgroups::MemoryUsage(const std::string& path) {
  WP_RETURN_IF_ERROR(ValidatePath(path, /*allow_root=*/true));
  // v1 memory.usage_in_bytes counts the subtree (use_hierarchy is always on
  // in the kernels warmpool supports); v2 memory.current always does.
  const Hierarchy* h = Find("memory");
  std::string file = "memory.usage_in_bytes";
  if (h == nullptr) {
    h = Find("unified");
    file = "memory.current";
  }
  if (h == nullptr) return absl::FailedPreconditionError("no memory cgroup hierarchy is mounted");
  absl::StatusOr<std::string> text = ReadFile(*h, path, file);
  if (!text.ok()) return text.status();
  return ParseU64(*text, absl::StrCat(file, " of cgroup ", path));
}

absl::StatusOr<uint64_t> Cgroups::CpuUsageNanos(const std::string& path) {
  WP_RETURN_IF_ERROR(ValidatePath(path, /*allow_root=*/true));
  if (const Hierarchy* h = Find("cpuacct")) {
    absl::StatusOr<std::string> text = ReadFile(*h, path, "cpuacct.usage");
    if (!text.ok()) return text.status();
    return ParseU64(*text, absl::StrCat("cpuacct.usage of cgroup ", path));
  }
  const Hierarchy* h = Find("unified");
  if (h == nullptr) return absl::FailedPreconditionError("no cpu accounting hierarchy is mounted");
  absl::StatusOr<std::string> text = ReadFile(*h, path, "cpu.stat");
  if (!text.ok()) return text.status();
  std::optional<std::string> usec = KeyedValue(*text, "usage_usec");
  if (!usec) {
    return absl::InternalError(absl::StrCat("cpu.stat of cgroup ", path, " has no usage_usec"));
  }
  absl::StatusOr<uint64_t> v = ParseU64(*usec, absl::StrCat("cpu.stat usage_usec of ", path));
  if (!v.ok()) return v.status();
  return *v * 1000;
}

absl::StatusOr<uint64_t> Cgroups::MemoryWorkingSet(const std::string& path) {
  absl::StatusOr<uint64_t> usage = MemoryUsage(path);
  if (!usage.ok()) return usage.status();
  const Hierarchy* h = Find("memory");
  std::string key = "total_inactive_file";
  if (h == nullptr) {
    h = Find("unified");
    key = "inactive_file";
  }
  absl::StatusOr<std::string> stat = ReadFile(*h, path, "memory.stat");
  if (!stat.ok()) return stat.status();
  uint64_t inactive = 0;
  if (std::optional<std::string> v = KeyedValue(*stat, key)) {
    absl::StatusOr<uint64_t> n = ParseU64(*v, absl::StrCat("memory.stat ", key, " of ", path));
    if (n.ok()) inactive = *n;
  }
  return inactive < *usage ? *usage - inactive : 0;
}

absl::Status Cgroups::ApplyLimits(const std::string& path, const Limits& limits) {
  WP_RETURN_IF_ERROR(ValidatePath(path, /*allow_root=*/false));
  if (const Hierarchy* cpu = Find("cpu")) {
    if (limits.cpu_shares > 0) {
      WP_RETURN_IF_ERROR(WriteFile(*cpu, path, "cpu.shares", absl::StrCat(limits.cpu_shares)));
    }
    if (limits.cpu_period > 0) {
      WP_RETURN_IF_ERROR(
          WriteFile(*cpu, path, "cpu.cfs_period_us", absl::StrCat(limits.cpu_period)));
    }
    if (limits.cpu_quota != 0) {
      WP_RETURN_IF_ERROR(WriteFile(*cpu, path, "cpu.cfs_quota_us",
                                   absl::StrCat(limits.cpu_quota > 0 ? limits.cpu_quota : -1)));
    }
  } else if (const Hierarchy* u = Find("unified")) {
    if (limits.cpu_shares > 0) {
      // runc's ConvertCPUSharesToCgroupV2Value: [2, 262144] -> [1, 10000].
      const int64_t weight = 1 + ((limits.cpu_shares - 2) * 9999) / 262142;
      WP_RETURN_IF_ERROR(WriteFile(*u, path, "cpu.weight", absl::StrCat(weight)));
    }
    if (limits.cpu_quota != 0 || limits.cpu_period > 0) {
      const int64_t period = limits.cpu_period > 0 ? limits.cpu_period : 100000;
      WP_RETURN_IF_ERROR(WriteFile(
          *u, path, "cpu.max",
          absl::StrCat(limits.cpu_quota > 0 ? absl::StrCat(limits.cpu_quota) : "max", " ",
                       period)));
    }
  }
  if (const Hierarchy* mem = Find("memory")) {
    WP_RETURN_IF_ERROR(WriteFile(
        *mem, path, "memory.limit_in_bytes",
        absl::StrCat(limits.memory_limit_bytes > 0 ? limits.memory_limit_bytes : -1)));
  } else if (const Hierarchy* u = Find("unified")) {
    WP_RETURN_IF_ERROR(WriteFile(
        *u, path, "memory.max",
        limits.memory_limit_bytes > 0 ? absl::StrCat(limits.memory_limit_bytes) : "max"));
  }
  return absl::OkStatus();
}

// ---- Cgroups: create and remove ---------------------------------------------------

// rmdir by hand, leaves first, in every hierarchy. Not libcgroup's
// cgroup_delete_cgroup_ext(): without CGFLAG_DELETE_EMPTY_ONLY it MOVES the
// remaining tasks into the parent cgroup and reports success, which would
// silently push a live entry's processes into the pool's parent; with it, it
// refuses CGFLAG_DELETE_RECURSIVE (ECGINVAL), and its ECGNONEMPTY names no
// cgroup. It also cannot reach name=systemd or a cgroup2 mount without
// controllers.
absl::Status Cgroups::RemoveIn(const Hierarchy& h, const std::string& path) const {
  const std::string base = FsPath(h, path);
  absl::StatusOr<std::vector<std::string>> dirs = SubtreeDirs(base);
  if (!dirs.ok()) {
    if (dirs.status().code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    return dirs.status();
  }
  std::vector<std::string> failures;
  absl::StatusCode code = absl::StatusCode::kOk;
  for (auto it = dirs->rbegin(); it != dirs->rend(); ++it) {
    const std::string& dir = *it;
    // A cgroup whose last task just exited can refuse rmdir (EBUSY) for a
    // moment; retry only while its cgroup.procs is empty.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    std::chrono::microseconds interval(50);
    for (;;) {
      if (rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
      int err = errno;
      std::string pids_text;
      if (err == EBUSY) {
        absl::StatusOr<std::string> procs = ReadWholeFile(dir + "/cgroup.procs");
        if (procs.ok()) {
          std::vector<pid_t> pids = ParsePids(*procs);
          if (pids.empty() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(interval);
            interval =
                std::min<std::chrono::microseconds>(interval * 2, std::chrono::milliseconds(20));
            continue;
          }
          if (!pids.empty()) {
            pids_text = absl::StrCat(" (tasks left: ", absl::StrJoin(pids, " "), ")");
          }
        }
      }
      failures.push_back(absl::StrCat("rmdir ", dir, ": ", strerror(err), pids_text));
      if (code == absl::StatusCode::kOk) code = ErrnoCode(err);
      break;
    }
  }
  if (failures.empty()) return absl::OkStatus();
  return absl::Status(code, absl::StrJoin(failures, "; "));
}

absl::Status Cgroups::RemoveTree(const std::string& path) {
  WP_RETURN_IF_ERROR(ValidatePath(path, /*allow_root=*/false));
  std::vector<std::string> failures;
  absl::StatusCode code = absl::StatusCode::kOk;
  for (const Hierarchy& h : hierarchies_) {
    absl::Status st = RemoveIn(h, path);
    if (st.ok()) continue;
    failures.push_back(absl::StrCat(h.label, ": ", st.message()));
    if (code == absl::StatusCode::kOk) code = st.code();
  }
  if (failures.empty()) return absl::OkStatus();
  return absl::Status(code,
                      absl::StrCat("removing cgroup ", path, ": ", absl::StrJoin(failures, "; ")));
}

// mkdir -p, by hand in every hierarchy. A hand-off makes a cgroup per
// container in each hierarchy, so this is on kubelet's clock: libcgroup's
// cgroup_create_cgroup() (ignore_ownership) made the same directories in
// 0.52 ms per container across ten hierarchies here, plain mkdir in 0.31 ms
// (it re-reads /proc/mounts and walks the path from / on every call, under
// the process-wide libcgroup mutex the pool's stats reads also take). For
// cgroup2 it was never an option: with a v2 controller it also writes
// "+controller" into cgroup.subtree_control of every ancestor up to the root
// (seen here: it enabled hugetlb in the root of /sys/fs/cgroup/unified).
// Which controllers a pool's cgroups delegate is a decision for whoever sets
// resources, not a side effect of mkdir.
absl::Status Cgroups::CreateIn(const Hierarchy& h, const std::string& path) const {
  // Levels that do not exist yet, top-down (cpuset needs them one by one).
  std::vector<std::string> missing;
  for (std::string p = path; p != "/" && !p.empty(); p = p.substr(0, p.rfind('/'))) {
    std::error_code ec;
    if (fs::is_directory(FsPath(h, p), ec)) break;
    missing.insert(missing.begin(), p);
    if (p.rfind('/') == 0) break;
  }
  const bool cpuset = !h.v2 && Find("cpuset") == &h;
  for (const std::string& level : missing) {
    if (mkdir(FsPath(h, level).c_str(), 0755) != 0 && errno != EEXIST) {
      int err = errno;
      return absl::Status(ErrnoCode(err),
                          absl::StrCat("mkdir ", FsPath(h, level), ": ", strerror(err)));
    }
    if (cpuset) {
      std::string parent = level.substr(0, level.rfind('/'));
      if (parent.empty()) parent = "/";
      for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
        absl::StatusOr<std::string> mine = ReadFile(h, level, file);
        if (!mine.ok()) return mine.status();
        if (!Trim(*mine).empty()) continue;
        absl::StatusOr<std::string> inherited = ReadFile(h, parent, file);
        if (!inherited.ok()) return inherited.status();
        WP_RETURN_IF_ERROR(WriteFile(h, level, file, Trim(*inherited)));
      }
    }
  }
  return absl::OkStatus();
}

// File I/O in every hierarchy, like CreateIn and for the same reason: one
// read of cgroup.procs and one write per process is all libcgroup's
// cgroup_get_procs/cgroup_set_value would do, at 0.43 ms per container
// moved through ten hierarchies against 0.26 ms by hand. Not libcgroup's
// cgroup_attach_task_pid: on v1 it writes "tasks", which moves one thread
// and leaves the process's other threads where they were (tried here).
// cgroup.procs moves the whole thread group.
absl::Status Cgroups::MoveProcs(const std::string& from, const std::string& to) {
  WP_RETURN_IF_ERROR(ValidatePath(from, /*allow_root=*/false));
  WP_RETURN_IF_ERROR(ValidatePath(to, /*allow_root=*/false));
  for (const Hierarchy& h : hierarchies_) {
    absl::StatusOr<std::vector<pid_t>> pids = Procs(h, from);
    if (absl::IsNotFound(pids.status())) continue;  // not in this hierarchy
    WP_RETURN_IF_ERROR(pids.status());
    if (pids->empty()) continue;
    if (!h.v2 && h.label.find("memory") != std::string::npos) {
      // v1 keeps the charge in the old cgroup unless the destination asks
      // for it (bit 0: anonymous pages, bit 1: file pages). Linux 6.8+
      // answers EINVAL: the knob is gone, the charge stays.
      (void)WriteFileIo(h, to, "memory.move_charge_at_immigrate", "3");
    }
    for (pid_t pid : *pids) {
      absl::Status st = WriteFileIo(h, to, "cgroup.procs", std::to_string(pid));
      if (!st.ok() && ::kill(pid, 0) == 0) return st;  // a process that exited meanwhile is fine
    }
  }
  return absl::OkStatus();
}

absl::Status Cgroups::Create(const std::string& path) {
  WP_RETURN_IF_ERROR(ValidatePath(path, /*allow_root=*/true));
  if (path == "/") return absl::OkStatus();
  for (const Hierarchy& h : hierarchies_) WP_RETURN_IF_ERROR(CreateIn(h, path));
  return absl::OkStatus();
}

absl::Status Cgroups::CreateFrozen(const std::string& path) {
  WP_RETURN_IF_ERROR(ValidatePath(path, /*allow_root=*/false));
  absl::StatusOr<const Hierarchy*> h = FreezerHierarchy();
  if (!h.ok()) return h.status();
  if ((*h)->v2) {
    return absl::UnimplementedError(
        absl::StrCat("cgroup ", path, ": a cgroup2 freezer cannot be frozen before its tasks "
                                      "arrive when systemd makes the cgroup"));
  }
  WP_RETURN_IF_ERROR(CreateIn(**h, path));
  return SetFrozen(path, true);
}

}  // namespace warmpool
