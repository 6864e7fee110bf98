// How long moving a container's processes into a pod's slice through
// systemd takes (ContainerCgroups::MoveContainer with a slice parent), on a
// real systemd: inside the node of test/harness/systemd.sh (this binary
// re-executes itself through WP_TEST_SYSTEMD_ENTER) or on a host whose PID 1
// is systemd.
//
//   two-step: the container's scope name is taken by its pool-entry scope
//             (the hand-off case): temp scope, stop old, final scope, stop temp
//   one-step: the name is free: one StartTransientUnit
// Each run moves P sleeping processes; prints a table of microseconds.
//
//   systemd_move_bench [--runs N] [--procs P]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "daemon/systemd_cgroups.h"

using namespace warmpool;

namespace {

std::vector<pid_t> Spawn(int n) {
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      for (;;) ::pause();
    }
    pids.push_back(pid);
  }
  return pids;
}

void Reap(const std::vector<pid_t>& pids) {
  for (pid_t p : pids) ::kill(p, SIGKILL);
  for (pid_t p : pids) ::waitpid(p, nullptr, 0);
}

// A pool entry's container as runc's systemd driver leaves it: its scope in
// a slice, and the same path in the freezer hierarchy.
std::string MakeSource(SdBusSystemd& systemd, const std::string& scope,
                       const std::vector<pid_t>& pids) {
  std::vector<uint32_t> list(pids.begin(), pids.end());
  absl::Status s =
      systemd.StartTransientUnit(scope, {{"Slice", std::string("warmpoolbench-src.slice")},
                                         {"Delegate", true},
                                         {"DefaultDependencies", false},
                                         {"PIDs", list}});
  if (!s.ok()) {
    std::fprintf(stderr, "source scope: %s\n", std::string(s.message()).c_str());
    std::exit(1);
  }
  const std::string path = "/warmpoolbench.slice/warmpoolbench-src.slice/" + scope;
  std::filesystem::create_directories("/sys/fs/cgroup/freezer" + path);
  for (pid_t p : pids) std::ofstream("/sys/fs/cgroup/freezer" + path + "/cgroup.procs") << p;
  return path;
}

struct Row {
  std::string name;
  std::vector<double> us;
};

double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

}  // namespace

int main(int argc, char** argv) {
  const char* enter = ::getenv("WP_TEST_SYSTEMD_ENTER");
  if (enter != nullptr && *enter != '\0' && ::getenv("WP_TEST_IN_SYSTEMD_NODE") == nullptr) {
    std::vector<char*> args{const_cast<char*>(enter)};
    std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    args.push_back(self.data());
    for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    ::execv(enter, args.data());
    std::perror("exec WP_TEST_SYSTEMD_ENTER");
    return 1;
  }
  int runs = 20, procs = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--runs") == 0) runs = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--procs") == 0) procs = std::atoi(argv[i + 1]);
  }
  std::ifstream comm("/proc/1/comm");
  std::string pid1;
  std::getline(comm, pid1);
  if (pid1 != "systemd") {
    std::fprintf(stderr,
                 "PID 1 is %s, not systemd: run inside test/harness/systemd.sh's node "
                 "(export WP_TEST_SYSTEMD_ENTER=DIR.sd/enter)\n",
                 pid1.c_str());
    return 2;
  }
  auto layout = CgroupLayout::Detect();
  if (!layout.ok()) return 1;
  Cgroups cgroups(*layout);
  SdBusSystemd systemd;
  ContainerCgroups placement(&cgroups, &systemd);
  const std::string pod_slice = "warmpoolbench-pod.slice";
  v1::LinuxContainerResources res;
  res.set_cpu_shares(102);
  res.set_memory_limit_in_bytes(256 << 20);

  Row two{"two-step (hand-off: name taken)", {}}, one{"one-step (name free)", {}};
  for (int run = 0; run < runs; ++run) {
    for (Row* row : {&two, &one}) {
      const std::string id = "wpbench" + std::to_string(run) + (row == &two ? "a" : "b");
      std::vector<pid_t> pids = Spawn(procs);
      const std::string src_scope =
          row == &two ? ContainerScopeName(id) : "warmpoolbench-src" + id + ".scope";
      const std::string from = MakeSource(systemd, src_scope, pids);
      const auto start = std::chrono::steady_clock::now();
      absl::Status s = placement.MoveContainer(from, pod_slice, id, false, &res);
      const auto took = std::chrono::steady_clock::now() - start;
      if (!s.ok()) {
        std::fprintf(stderr, "move: %s\n", std::string(s.message()).c_str());
        Reap(pids);
        return 1;
      }
      row->us.push_back(std::chrono::duration<double, std::micro>(took).count());
      Reap(pids);
      (void)placement.RemoveMoved(pod_slice, id);
      (void)systemd.StopUnit(src_scope);
      std::filesystem::remove("/sys/fs/cgroup/freezer" + from);
    }
  }
  (void)systemd.StopUnit(pod_slice);
  (void)systemd.StopUnit("warmpoolbench.slice");
  std::error_code ec;
  for (const char* d : {"/sys/fs/cgroup/freezer/warmpoolbench.slice/warmpoolbench-src.slice",
                        "/sys/fs/cgroup/freezer/warmpoolbench.slice/warmpoolbench-pod.slice",
                        "/sys/fs/cgroup/freezer/warmpoolbench.slice",
                        "/sys/fs/cgroup/cpuset/warmpoolbench.slice/warmpoolbench-pod.slice",
                        "/sys/fs/cgroup/cpuset/warmpoolbench.slice"}) {
    std::filesystem::remove(d, ec);
  }

  std::printf("systemd move of %d process(es) into a scope in a pod slice, %d runs (us)\n", procs,
              runs);
  std::printf("%-34s %10s %10s %10s %10s\n", "variant", "p50", "p90", "max", "min");
  for (const Row* row : {&two, &one}) {
    std::printf("%-34s %10.0f %10.0f %10.0f %10.0f\n", row->name.c_str(), Pct(row->us, 0.5),
                Pct(row->us, 0.9), *std::max_element(row->us.begin(), row->us.end()),
                *std::min_element(row->us.begin(), row->us.end()));
  }
  return 0;
}
