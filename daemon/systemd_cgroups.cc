#include "daemon/systemd_cgroups.h"

#include <errno.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace warmpool {
namespace {

constexpr const char* kDest = "org.freedesktop.systemd1";
constexpr const char* kPath = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";
constexpr const char* kPrivateSocket = "/run/systemd/private";
constexpr const char* kScopePrefix = "cri-containerd-";
constexpr const char* kMovePrefix = "warmpool-move-";

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string BaseName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// systemd's root cgroup as runc finds it: PID 1's cgroup without
// "/init.scope" (cgroup2 line first, then name=systemd).
std::string DetectSystemdRoot() {
  std::ifstream in("/proc/1/cgroup");
  std::string line, unified, named;
  while (std::getline(in, line)) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (parts[0] == "0" && parts[1].empty()) unified = parts[2];
    if (parts[1] == "name=systemd") named = parts[2];
  }
  std::string root = !named.empty() ? named : unified;
  if (EndsWith(root, "/init.scope")) root.resize(root.size() - std::strlen("/init.scope"));
  if (root == "/") root.clear();
  return root;
}

// mkdir of every missing level of `path` under mount point `mount`; new
// cpuset levels inherit their parent's cpus and mems.
absl::Status MkdirAll(const std::string& mount, const std::string& path) {
  std::string dir = mount;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    const std::string parent = dir;
    absl::StrAppend(&dir, "/", part);
    if (::mkdir(dir.c_str(), 0755) != 0) {
      if (errno == EEXIST) continue;
      return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", std::strerror(errno)));
    }
    for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
      std::ifstream from(parent + "/" + file);
      if (!from) continue;
      std::string value;
      std::getline(from, value);
      std::ofstream to(dir + "/" + file);
      to << value;
    }
  }
  return absl::OkStatus();
}

absl::Status WritePid(const std::string& file, pid_t pid) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", file, ": ", std::strerror(errno)));
  const std::string text = std::to_string(pid);
  ssize_t n = ::write(fd, text.data(), text.size());
  const int err = errno;
  ::close(fd);
  if (n < 0 && err != ESRCH) {
    return absl::InternalError(absl::StrCat("write ", pid, " to ", file, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace

// ---- naming -----------------------------------------------------------------

bool IsSystemdSlice(const std::string& cgroup_parent) {
  return EndsWith(BaseName(cgroup_parent), ".slice");
}

std::string SliceUnitName(const std::string& cgroup_parent) { return BaseName(cgroup_parent); }

absl::StatusOr<std::string> ExpandSlice(const std::string& slice) {
  if (!EndsWith(slice, ".slice") || slice.find('/') != std::string::npos) {
    return absl::InvalidArgumentError("not a slice unit name: \"" + slice + "\"");
  }
  const std::string name = slice.substr(0, slice.size() - std::strlen(".slice"));
  if (name == "-") return std::string("/");
  if (name.empty()) return absl::InvalidArgumentError("empty slice name: \"" + slice + "\"");
  std::string path, prefix;
  for (absl::string_view component : absl::StrSplit(name, '-')) {
    if (component.empty()) {
      return absl::InvalidArgumentError("slice name with an empty component: \"" + slice + "\"");
    }
    absl::StrAppend(&prefix, prefix.empty() ? "" : "-", component);
    absl::StrAppend(&path, "/", prefix, ".slice");
  }
  return path;
}

std::string ContainerScopeName(const std::string& container_id) {
  return kScopePrefix + container_id + ".scope";
}

std::string MoveScopeName(const std::string& container_id) {
  return kMovePrefix + container_id + ".scope";
}

std::string ContainerIdOfCgroup(const std::string& cgroup_name) {
  if (StartsWith(cgroup_name, kScopePrefix) && EndsWith(cgroup_name, ".scope")) {
    return cgroup_name.substr(std::strlen(kScopePrefix),
                              cgroup_name.size() - std::strlen(kScopePrefix) - 6);
  }
  return cgroup_name;
}

std::string EscapeSliceComponent(const std::string& component) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : component) {
    if (std::isalnum(c) || c == ':' || c == '_' || c == '.') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

namespace {
// "warmpool.slice" -> "warmpool"; "-.slice" -> "".
std::string SlicePrefix(const std::string& parent_slice) {
  std::string name = SliceUnitName(parent_slice);
  if (EndsWith(name, ".slice")) name.resize(name.size() - 6);
  return name == "-" ? std::string() : name;
}
std::string Join(const std::string& prefix, const std::string& component) {
  return prefix.empty() ? component : prefix + "-" + component;
}
std::string PathOfSlice(const std::string& slice) {
  auto path = ExpandSlice(slice);
  return path.ok() ? *path : "/" + slice;
}
}  // namespace

std::string PoolSlicePath(const std::string& parent_slice, const std::string& pool) {
  return PathOfSlice(Join(SlicePrefix(parent_slice), EscapeSliceComponent(pool)) + ".slice");
}

std::string EntrySlicePath(const std::string& parent_slice, const std::string& pool,
                           const std::string& entry_id) {
  return PathOfSlice(Join(Join(SlicePrefix(parent_slice), EscapeSliceComponent(pool)),
                          EscapeSliceComponent(entry_id)) +
                     ".slice");
}

std::string EntryIdOfSlice(const std::string& slice_cgroup_name) {
  std::string name = slice_cgroup_name;
  if (EndsWith(name, ".slice")) name.resize(name.size() - 6);
  size_t dash = name.find_last_of('-');
  return dash == std::string::npos ? name : name.substr(dash + 1);
}

// ---- properties ---------------------------------------------------------------

uint64_t CpuSharesToWeight(uint64_t shares) {
  if (shares == 0) return 0;
  if (shares < 2) shares = 2;
  if (shares > 262144) shares = 262144;
  return 1 + ((shares - 2) * 9999) / 262142;
}

v1::LinuxContainerResources SandboxContainerResources() {
  v1::LinuxContainerResources r;
  r.set_cpu_shares(2);
  return r;
}

absl::StatusOr<std::vector<UnitProperty>> ResourceProperties(const v1::LinuxContainerResources& r,
                                                             bool cgroup_v1) {
  if (!r.cpuset_cpus().empty() || !r.cpuset_mems().empty()) {
    return absl::UnimplementedError("resources.cpuset_cpus/cpuset_mems: not set through systemd");
  }
  if (r.hugepage_limits_size() > 0) {
    return absl::UnimplementedError("resources.hugepage_limits: not set through systemd");
  }
  if (!r.unified().empty()) {
    return absl::UnimplementedError("resources.unified: not set through systemd");
  }
  if (r.cpu_shares() < 0 || r.cpu_period() < 0 || r.memory_limit_in_bytes() < 0) {
    return absl::InvalidArgumentError("resources: negative cpu_shares, cpu_period or memory limit");
  }
  std::vector<UnitProperty> props;
  if (r.cpu_shares() > 0) {
    if (cgroup_v1) {
      props.push_back({"CPUShares", static_cast<uint64_t>(r.cpu_shares())});
    } else {
      props.push_back({"CPUWeight", CpuSharesToWeight(static_cast<uint64_t>(r.cpu_shares()))});
    }
  }
  if (r.cpu_quota() > 0 && r.cpu_period() > 0) {
    uint64_t per_sec =
        static_cast<uint64_t>(r.cpu_quota()) * 1000000 / static_cast<uint64_t>(r.cpu_period());
    if (per_sec % 10000 != 0) per_sec = (per_sec / 10000 + 1) * 10000;
    props.push_back({"CPUQuotaPerSecUSec", per_sec});
    props.push_back({"CPUQuotaPeriodUSec", static_cast<uint64_t>(r.cpu_period())});
  } else if (r.cpu_quota() > 0) {
    return absl::InvalidArgumentError("resources.cpu_quota without cpu_period");
  }
  if (r.memory_limit_in_bytes() > 0 && cgroup_v1) {
    props.push_back({"MemoryLimit", static_cast<uint64_t>(r.memory_limit_in_bytes())});
    if (r.memory_swap_limit_in_bytes() > 0 &&
        r.memory_swap_limit_in_bytes() != r.memory_limit_in_bytes()) {
      return absl::UnimplementedError(
          "resources.memory_swap_limit_in_bytes: systemd cannot set a v1 swap limit");
    }
  } else if (r.memory_limit_in_bytes() > 0) {
    props.push_back({"MemoryMax", static_cast<uint64_t>(r.memory_limit_in_bytes())});
    // CRI's swap limit is memory + swap (v1 memsw); systemd's is swap alone.
    if (r.memory_swap_limit_in_bytes() > 0) {
      if (r.memory_swap_limit_in_bytes() < r.memory_limit_in_bytes()) {
        return absl::InvalidArgumentError(
            "resources.memory_swap_limit_in_bytes is below memory_limit_in_bytes");
      }
      props.push_back({"MemorySwapMax", static_cast<uint64_t>(r.memory_swap_limit_in_bytes() -
                                                              r.memory_limit_in_bytes())});
    }
  }
  return props;
}

// ---- sd-bus -------------------------------------------------------------------

struct SdBusSystemd::Bus {
  sd_bus* bus = nullptr;
  sd_bus_slot* slot = nullptr;
  std::map<std::string, std::string> finished;  // job object path -> result
  ~Bus() {
    sd_bus_slot_unref(slot);
    sd_bus_flush_close_unref(bus);
  }
};

namespace {

struct BusError {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  ~BusError() { sd_bus_error_free(&e); }
};
struct Message {
  sd_bus_message* m = nullptr;
  ~Message() { sd_bus_message_unref(m); }
};

absl::Status FromBus(const std::string& what, int r, const sd_bus_error* e) {
  std::string msg = what + ": ";
  if (e != nullptr && sd_bus_error_is_set(e)) {
    absl::StrAppend(&msg, e->name, ": ", e->message ? e->message : "");
    if (sd_bus_error_has_name(e, "org.freedesktop.systemd1.NoSuchUnit")) {
      return absl::NotFoundError(msg);
    }
    if (sd_bus_error_has_name(e, "org.freedesktop.systemd1.UnitExists")) {
      return absl::AlreadyExistsError(msg);
    }
    return absl::InternalError(msg);
  }
  absl::StrAppend(&msg, std::strerror(r < 0 ? -r : r));
  return absl::UnavailableError(msg);
}

int AppendProperty(sd_bus_message* m, const UnitProperty& p) {
  int r = sd_bus_message_open_container(m, 'r', "sv");
  if (r < 0) return r;
  if ((r = sd_bus_message_append_basic(m, 's', p.name.c_str())) < 0) return r;
  if (const auto* u = std::get_if<uint64_t>(&p.value)) {
    r = sd_bus_message_append(m, "v", "t", *u);
  } else if (const auto* b = std::get_if<bool>(&p.value)) {
    r = sd_bus_message_append(m, "v", "b", static_cast<int>(*b));
  } else if (const auto* s = std::get_if<std::string>(&p.value)) {
    r = sd_bus_message_append(m, "v", "s", s->c_str());
  } else {
    const auto& pids = std::get<std::vector<uint32_t>>(p.value);
    if ((r = sd_bus_message_open_container(m, 'v', "au")) < 0) return r;
    if ((r = sd_bus_message_append_array(m, 'u', pids.data(), pids.size() * sizeof(uint32_t))) <
        0) {
      return r;
    }
    r = sd_bus_message_close_container(m);
  }
  if (r < 0) return r;
  return sd_bus_message_close_container(m);
}

// The a(sv) array of unit properties StartTransientUnit and
// SetUnitProperties take.
int AppendProperties(sd_bus_message* m, const std::vector<UnitProperty>& properties) {
  int r = sd_bus_message_open_container(m, 'a', "(sv)");
  for (const UnitProperty& p : properties) {
    if (r >= 0) r = AppendProperty(m, p);
  }
  if (r >= 0) r = sd_bus_message_close_container(m);
  return r;
}

}  // namespace

SdBusSystemd::SdBusSystemd() = default;
SdBusSystemd::~SdBusSystemd() = default;

void SdBusSystemd::DropLocked() { bus_.reset(); }

absl::Status SdBusSystemd::ConnectLocked() {
  if (bus_) return absl::OkStatus();
  auto b = std::make_unique<Bus>();
  int r;
  std::string where;
  if (::geteuid() == 0 && ::access(kPrivateSocket, F_OK) == 0) {
    where = kPrivateSocket;
    r = sd_bus_new(&b->bus);
    if (r >= 0) r = sd_bus_set_address(b->bus, "unix:path=/run/systemd/private");
    if (r >= 0) r = sd_bus_start(b->bus);
  } else {
    where = "the system bus";
    r = sd_bus_open_system(&b->bus);
  }
  if (r < 0) return FromBus("connecting to systemd on " + where, r, nullptr);
  auto on_job_removed = [](sd_bus_message* m, void* userdata, sd_bus_error*) -> int {
    uint32_t id;
    const char *job, *unit, *result;
    if (sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) >= 0) {
      static_cast<Bus*>(userdata)->finished[job] = result;
    }
    return 0;
  };
  r = sd_bus_match_signal(b->bus, &b->slot, nullptr, kPath, kManager, "JobRemoved", on_job_removed,
                          b.get());
  if (r < 0) return FromBus("subscribing to systemd's JobRemoved", r, nullptr);
  BusError err;
  r = sd_bus_call_method(b->bus, kDest, kPath, kManager, "Subscribe", &err.e, nullptr, "");
  if (r < 0) return FromBus("systemd Subscribe", r, &err.e);
  bus_ = std::move(b);
  return absl::OkStatus();
}

absl::Status SdBusSystemd::WaitJobLocked(const std::string& job, const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + job_timeout_;
  for (;;) {
    auto it = bus_->finished.find(job);
    if (it != bus_->finished.end()) {
      std::string result = it->second;
      bus_->finished.erase(it);
      if (result == "done") return absl::OkStatus();
      return absl::InternalError(what + ": systemd job " + result);
    }
    int r = sd_bus_process(bus_->bus, nullptr);
    if (r < 0) {
      DropLocked();
      return FromBus(what + ": waiting for the job", r, nullptr);
    }
    if (r > 0) continue;
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return absl::DeadlineExceededError(what + ": systemd did not finish job " + job);
    }
    r = sd_bus_wait(bus_->bus, static_cast<uint64_t>(left.count()));
    if (r < 0) {
      DropLocked();
      return FromBus(what + ": waiting for the job", r, nullptr);
    }
  }
}

absl::Status SdBusSystemd::StartTransientUnit(const std::string& name,
                                              const std::vector<UnitProperty>& properties) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = ConnectLocked(); !s.ok()) return s;
  const std::string what = "StartTransientUnit " + name;
  Message call, reply;
  BusError err;
  int r = sd_bus_message_new_method_call(bus_->bus, &call.m, kDest, kPath, kManager,
                                         "StartTransientUnit");
  if (r >= 0) r = sd_bus_message_append(call.m, "ss", name.c_str(), "fail");
  if (r >= 0) r = AppendProperties(call.m, properties);
  if (r >= 0) r = sd_bus_message_append(call.m, "a(sa(sv))", 0);
  if (r < 0) return FromBus(what + ": building the call", r, nullptr);
  r = sd_bus_call(bus_->bus, call.m, 0, &err.e, &reply.m);
  if (r < 0) {
    if (!sd_bus_error_is_set(&err.e)) DropLocked();
    return FromBus(what, r, &err.e);
  }
  const char* job = nullptr;
  if ((r = sd_bus_message_read(reply.m, "o", &job)) < 0) return FromBus(what, r, nullptr);
  return WaitJobLocked(job, what);
}

absl::Status SdBusSystemd::StopUnit(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = ConnectLocked(); !s.ok()) return s;
  const std::string what = "StopUnit " + name;
  BusError err;
  Message reply;
  int r = sd_bus_call_method(bus_->bus, kDest, kPath, kManager, "StopUnit", &err.e, &reply.m, "ss",
                             name.c_str(), "replace");
  if (r < 0) {
    if (!sd_bus_error_is_set(&err.e)) DropLocked();
    absl::Status s = FromBus(what, r, &err.e);
    return absl::IsNotFound(s) ? absl::OkStatus() : s;
  }
  const char* job = nullptr;
  if ((r = sd_bus_message_read(reply.m, "o", &job)) < 0) return FromBus(what, r, nullptr);
  absl::Status s = WaitJobLocked(job, what);
  // A unit that ended "failed" keeps its name until reset.
  BusError ignored;
  (void)sd_bus_call_method(bus_->bus, kDest, kPath, kManager, "ResetFailedUnit", &ignored.e,
                           nullptr, "s", name.c_str());
  return s;
}

absl::StatusOr<bool> SdBusSystemd::HasUnit(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = ConnectLocked(); !s.ok()) return s;
  BusError err;
  Message reply;
  int r = sd_bus_call_method(bus_->bus, kDest, kPath, kManager, "GetUnit", &err.e, &reply.m, "s",
                             name.c_str());
  if (r >= 0) return true;
  if (!sd_bus_error_is_set(&err.e)) DropLocked();
  absl::Status s = FromBus("GetUnit " + name, r, &err.e);
  if (absl::IsNotFound(s)) return false;
  return s;
}

absl::Status SdBusSystemd::SetUnitProperties(const std::string& name,
                                             const std::vector<UnitProperty>& properties) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = ConnectLocked(); !s.ok()) return s;
  const std::string what = "SetUnitProperties " + name;
  Message call, reply;
  BusError err;
  int r = sd_bus_message_new_method_call(bus_->bus, &call.m, kDest, kPath, kManager,
                                         "SetUnitProperties");
  if (r >= 0) r = sd_bus_message_append(call.m, "sb", name.c_str(), 1);
  if (r >= 0) r = AppendProperties(call.m, properties);
  if (r < 0) return FromBus(what + ": building the call", r, nullptr);
  r = sd_bus_call(bus_->bus, call.m, 0, &err.e, &reply.m);
  if (r < 0) {
    if (!sd_bus_error_is_set(&err.e)) DropLocked();
    return FromBus(what, r, &err.e);
  }
  return absl::OkStatus();
}

// ---- ContainerCgroups ---------------------------------------------------------

ContainerCgroups::ContainerCgroups(Cgroups* cgroups, SystemdManager* systemd)
    : cgroups_(cgroups), systemd_(systemd), systemd_root_(DetectSystemdRoot()) {}

absl::StatusOr<std::string> ContainerCgroups::ContainerCgroup(const std::string& parent,
                                                              const std::string& id) const {
  if (!IsSystemdSlice(parent)) return parent + "/" + id;
  auto slice = ExpandSlice(SliceUnitName(parent));
  if (!slice.ok()) return slice.status();
  return systemd_root_ + (*slice == "/" ? "" : *slice) + "/" + ContainerScopeName(id);
}

absl::Status ContainerCgroups::MoveContainer(const std::string& from, const std::string& parent,
                                             const std::string& id, bool is_sandbox,
                                             const v1::LinuxContainerResources* resources,
                                             bool frozen) {
  if (IsSystemdSlice(parent)) return MoveToScope(from, parent, id, is_sandbox, resources, frozen);
  if (!parent.empty() && parent.front() != '/') {
    return absl::InvalidArgumentError("cgroup_parent \"" + parent +
                                      "\" is neither a cgroupfs path nor a systemd slice");
  }
  const std::string to = parent + "/" + id;
  if (absl::Status s = cgroups_->Create(to); !s.ok()) return s;
  if (frozen) {
    if (absl::Status s = cgroups_->Freeze(to); !s.ok()) return s;
  }
  return cgroups_->MoveProcs(from, to);
}

absl::Status ContainerCgroups::ApplyResources(const std::string& parent, const std::string& id,
                                              const v1::LinuxContainerResources& r) {
  if (!IsSystemdSlice(parent)) {
    auto path = ContainerCgroup(parent, id);
    if (!path.ok()) return path.status();
    return cgroups_->ApplyLimits(*path, {.cpu_shares = r.cpu_shares(),
                                         .cpu_quota = r.cpu_quota(),
                                         .cpu_period = r.cpu_period(),
                                         .memory_limit_bytes = r.memory_limit_in_bytes()});
  }
  if (systemd_ == nullptr) {
    return absl::FailedPreconditionError("cgroup_parent \"" + parent +
                                         "\" is a systemd slice but warmpoold has no systemd");
  }
  auto props = ResourceProperties(r, cgroup_v1());
  if (!props.ok()) return props.status();
  if (props->empty()) return absl::OkStatus();
  return systemd_->SetUnitProperties(ContainerScopeName(id), *props);
}

absl::Status ContainerCgroups::MoveToScope(const std::string& from, const std::string& parent,
                                           const std::string& id, bool is_sandbox,
                                           const v1::LinuxContainerResources* resources,
                                           bool frozen) {
  if (systemd_ == nullptr) {
    return absl::FailedPreconditionError("cgroup_parent \"" + parent +
                                         "\" is a systemd slice but warmpoold has no systemd");
  }
  auto target = ContainerCgroup(parent, id);
  if (!target.ok()) return target.status();
  std::vector<UnitProperty> props;
  if (resources != nullptr) {
    auto mapped = ResourceProperties(*resources, cgroup_v1());
    if (!mapped.ok()) return mapped.status();
    props = std::move(*mapped);
  }
  auto pids = cgroups_->Pids(from);
  if (!pids.ok()) return pids.status();
  if (pids->empty()) return absl::FailedPreconditionError("no process in " + from);
  std::vector<uint32_t> pid_list(pids->begin(), pids->end());
  // Frozen processes stay in the entry's (frozen) freezer cgroup through
  // systemd's moves, which leave that hierarchy alone; they join a freezer
  // cgroup frozen before they arrive.
  if (frozen) {
    if (absl::Status s = cgroups_->CreateFrozen(*target); !s.ok()) return s;
  }

  const std::string slice = SliceUnitName(parent);
  const std::string scope = ContainerScopeName(id);
  const std::string description =
      std::string(is_sandbox ? "pod sandbox " : "container ") + id + " (adopted by warmpool)";
  auto scope_props = [&](const std::string& desc) {
    return std::vector<UnitProperty>{{"Description", desc},
                                     {"Slice", slice},
                                     {"Delegate", true},
                                     {"DefaultDependencies", false},
                                     {"PIDs", pid_list}};
  };

  // The entry's scope has the container's unit name: the processes step
  // through a temporary scope so it can empty and go.
  auto exists = systemd_->HasUnit(scope);
  if (!exists.ok()) return exists.status();
  const bool two_step = *exists;
  if (two_step) {
    const std::string temp = MoveScopeName(id);
    if (absl::Status s = systemd_->StartTransientUnit(temp, scope_props("warmpool move of " + id));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = systemd_->StopUnit(scope); !s.ok()) return s;
  }
  std::vector<UnitProperty> final_props = scope_props(description);
  final_props.insert(final_props.end(), props.begin(), props.end());
  // The stopped unit is garbage-collected on systemd's next loop iteration.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (auto pause = std::chrono::microseconds(200);; pause *= 2) {
    absl::Status s = systemd_->StartTransientUnit(scope, final_props);
    if (s.ok()) break;
    if (!absl::IsAlreadyExists(s) || std::chrono::steady_clock::now() > deadline) return s;
    std::this_thread::sleep_for(std::min(pause, std::chrono::microseconds(50000)));
  }
  if (two_step) {
    if (absl::Status s = systemd_->StopUnit(MoveScopeName(id)); !s.ok()) return s;
  }
  return JoinOtherHierarchies(*pids, *target);
}

absl::Status ContainerCgroups::JoinOtherHierarchies(const std::vector<pid_t>& pids,
                                                    const std::string& path) {
  const CgroupLayout& layout = cgroups_->layout();
  for (pid_t pid : pids) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    if (!in) continue;  // exited
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
      if (parts.size() != 3 || parts[2] == path) continue;
      std::string mount;
      if (parts[1].empty()) {
        mount = layout.unified;
      } else {
        std::string first = std::vector<std::string>(absl::StrSplit(parts[1], ','))[0];
        auto it = layout.v1.find(first);
        if (it != layout.v1.end()) mount = it->second;
      }
      if (mount.empty()) continue;  // a hierarchy not mounted here
      if (absl::Status s = MkdirAll(mount, path); !s.ok()) return s;
      if (absl::Status s = WritePid(mount + path + "/cgroup.procs", pid); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ContainerCgroups::RemoveMoved(const std::string& parent, const std::string& id) {
  if (IsSystemdSlice(parent) && systemd_ != nullptr) {
    // Units go by name, wherever they are (a bad slice name moved nothing).
    absl::Status temp = systemd_->StopUnit(MoveScopeName(id));
    absl::Status scope = systemd_->StopUnit(ContainerScopeName(id));
    if (!temp.ok()) return temp;
    if (!scope.ok()) return scope;
  }
  auto path = ContainerCgroup(parent, id);
  if (!path.ok()) return IsSystemdSlice(parent) ? absl::OkStatus() : path.status();
  return cgroups_->RemoveTree(*path);
}

absl::Status ContainerCgroups::RemoveTree(const std::string& path) {
  if (IsSystemdSlice(path) && systemd_ != nullptr) {
    if (absl::Status s = systemd_->StopUnit(SliceUnitName(path)); !s.ok()) return s;
  }
  return cgroups_->RemoveTree(path);
}

}  // namespace warmpool
