#include "test/integration/pool_support.h"

#include "containerd_containers.grpc.pb.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace warmpool::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kCgroupRoot = "/sys/fs/cgroup";

std::string TomlString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

std::optional<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WriteSmallFile(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  ::close(fd);
  return ok;
}

// Gone, or a zombie its parent has not reaped yet.
bool PidGone(pid_t pid) {
  auto stat = ReadWholeFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  size_t paren = stat->rfind(") ");
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] == 'Z';
}

std::string FindInPath(const std::string& name) {
  std::stringstream path(Getenv("PATH").empty() ? "/usr/sbin:/usr/bin:/sbin:/bin" : Getenv("PATH"));
  std::string dir;
  while (std::getline(path, dir, ':')) {
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

bool CriAnswers(const std::string& sock) {
  auto stub = cri::RuntimeService::NewStub(ConnectCri(sock));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 1s);
  cri::VersionRequest req;
  req.set_version("v1");
  cri::VersionResponse resp;
  return stub->Version(&ctx, req, &resp).ok();
}

}  // namespace

// ---------------------------------------------------------------- admin --

AdminClient::AdminClient(const std::string& socket_path)
    : stub_(adminpb::Admin::NewStub(
          grpc::CreateChannel("unix:" + socket_path, grpc::InsecureChannelCredentials()))) {}

grpc::Status AdminClient::ListPools(adminpb::ListPoolsResponse* out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  return stub_->ListPools(&ctx, adminpb::ListPoolsRequest(), out);
}

grpc::Status AdminClient::ListEntries(const std::string& pool, adminpb::ListEntriesResponse* out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  adminpb::ListEntriesRequest req;
  req.set_pool(pool);
  return stub_->ListEntries(&ctx, req, out);
}

std::optional<adminpb::PoolStatus> AdminClient::Pool(const std::string& name) {
  adminpb::ListPoolsResponse resp;
  if (!ListPools(&resp).ok()) return std::nullopt;
  for (const auto& p : resp.pools()) {
    if (p.name() == name) return p;
  }
  return std::nullopt;
}

std::vector<adminpb::Entry> AdminClient::Entries(const std::string& pool) {
  adminpb::ListEntriesResponse resp;
  if (!ListEntries(pool, &resp).ok()) return {};
  return {resp.entries().begin(), resp.entries().end()};
}

// --------------------------------------------------------------- config --

std::string PoolsToml(const std::vector<TestPool>& pools) {
  std::ostringstream out;
  for (const TestPool& p : pools) {
    out << "[[pool]]\n"
        << "name = " << TomlString(p.name) << "\n"
        << "size = " << p.size << "\n"
        << "network = " << TomlString(p.network) << "\n"
        << "[pool.sandbox]\n"
        << "dns = { servers = [\"127.0.0.1\"] }\n";
    for (const TestPool::Container& c : p.containers) {
      out << "[[pool.container]]\n"
          << "name = " << TomlString(c.name) << "\n"
          << "image = " << TomlString(c.image) << "\n"
          << "env = {";
      bool first = true;
      for (const auto& [k, v] : c.env) {
        out << (first ? " " : ", ") << k << " = " << TomlString(v);
        first = false;
      }
      out << (first ? "}" : " }") << "\n"
          << "ready = { http = { port = " << c.http_port
          << ", path = \"/healthz\" }, timeout = " << TomlString(c.ready_timeout) << " }\n";
    }
    out << "\n";
  }
  return out.str();
}

std::string PoolDaemonToml(const std::string& pool_cgroup_parent, const std::string& more) {
  std::string out = "pool_cgroup_parent = " + TomlString(pool_cgroup_parent);
  if (!more.empty()) out += "\n" + more;
  return out;
}

std::string RewriteConfigTail(const std::string& path, const std::string& tail) {
  auto text = ReadWholeFile(path);
  if (!text) return "cannot read " + path;
  size_t end = text->find("\n\n");
  if (end == std::string::npos) end = text->size();
  std::string head = text->substr(0, end) + "\n";
  // Written next to it and renamed: the daemon never reads half a file.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << head;
    if (!tail.empty()) out << "\n" << tail << "\n";
    if (!out) return "cannot write " + tmp;
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  return ec ? "rename " + tmp + ": " + ec.message() : "";
}

std::optional<std::map<std::string, std::string>> ContainerdRecordLabels(
    const std::string& containerd_sock, const std::string& id) {
  namespace cd = ::containerd::services::containers::v1;
  auto stub = cd::Containers::NewStub(ConnectCri(containerd_sock));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  ctx.AddMetadata("containerd-namespace", "k8s.io");
  cd::GetContainerRequest req;
  req.set_id(id);
  cd::GetContainerResponse resp;
  if (!stub->Get(&ctx, req, &resp).ok()) return std::nullopt;
  return std::map<std::string, std::string>(resp.container().labels().begin(),
                                            resp.container().labels().end());
}

// -------------------------------------------------------------- cgroups --

std::vector<std::string> CgroupHierarchies() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(kCgroupRoot, ec)) {
    if (d.is_directory() && !d.is_symlink()) out.push_back(d.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::string> ReadCgroupFile(const std::string& hierarchy, const std::string& path,
                                          const std::string& file) {
  auto text = ReadWholeFile(std::string(kCgroupRoot) + "/" + hierarchy + path + "/" + file);
  if (!text) return std::nullopt;
  while (!text->empty() && std::isspace(static_cast<unsigned char>(text->back()))) text->pop_back();
  return text;
}

std::optional<uint64_t> ReadCgroupNumber(const std::string& hierarchy, const std::string& path,
                                         const std::string& file) {
  auto text = ReadCgroupFile(hierarchy, path, file);
  if (!text || text->empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text->c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return std::nullopt;
  return v;
}

std::set<std::string> CgroupDirsBelow(const std::string& path) {
  std::set<std::string> out;
  for (const std::string& h : CgroupHierarchies()) {
    const fs::path base = fs::path(kCgroupRoot) / h;
    const fs::path top = std::string(kCgroupRoot) + "/" + h + path;
    std::error_code ec;
    if (!fs::is_directory(top, ec)) continue;
    for (auto it = fs::recursive_directory_iterator(top, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory()) out.insert("/" + fs::relative(it->path(), base).string());
    }
  }
  return out;
}

bool CgroupExistsAnywhere(const std::string& path) {
  for (const std::string& h : CgroupHierarchies()) {
    std::error_code ec;
    if (fs::is_directory(std::string(kCgroupRoot) + "/" + h + path, ec)) return true;
  }
  return false;
}

// ----------------------------------------------------- containerd side --

std::optional<std::vector<cri::PodSandbox>> ManagedSandboxes(cri::RuntimeService::Stub& runtime,
                                                             const std::string& pool) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  cri::ListPodSandboxRequest req;
  auto& selector = *req.mutable_filter()->mutable_label_selector();
  selector["warmpool.io/managed"] = "true";
  if (!pool.empty()) selector["warmpool.io/pool"] = pool;
  cri::ListPodSandboxResponse resp;
  if (!runtime.ListPodSandbox(&ctx, req, &resp).ok()) return std::nullopt;
  return std::vector<cri::PodSandbox>(resp.items().begin(), resp.items().end());
}

ForcedCleanup ForceRemovePools(const std::string& containerd_sock,
                               const std::set<std::string>& pools,
                               const std::string& pool_cgroup_parent) {
  ForcedCleanup result;
  if (pool_cgroup_parent.empty() || pool_cgroup_parent == "/") {
    result.problems.push_back("refusing pool cgroup parent '" + pool_cgroup_parent + "'");
    return result;
  }
  // 1. Thaw, parents first: a frozen task cannot be killed (v1 keeps the
  // SIGKILL pending), and a shim can hang on one.
  for (const std::string& h : CgroupHierarchies()) {
    const std::string top = std::string(kCgroupRoot) + "/" + h + pool_cgroup_parent;
    std::error_code ec;
    if (!fs::is_directory(top, ec)) continue;
    std::vector<std::string> dirs = {top};
    for (auto it = fs::recursive_directory_iterator(top, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory()) dirs.push_back(it->path().string());
    }
    std::sort(dirs.begin(), dirs.end());  // parents before children
    for (const std::string& d : dirs) {
      if (fs::exists(d + "/freezer.state")) WriteSmallFile(d + "/freezer.state", "THAWED");
      if (fs::exists(d + "/cgroup.freeze")) WriteSmallFile(d + "/cgroup.freeze", "0");
    }
  }

  // 2. The pools' sandboxes, straight against containerd.
  auto stub = cri::RuntimeService::NewStub(ConnectCri(containerd_sock));
  auto sandboxes = ManagedSandboxes(*stub);
  if (!sandboxes) {
    result.problems.push_back("cannot list managed sandboxes in containerd");
  } else {
    for (const cri::PodSandbox& sb : *sandboxes) {
      auto it = sb.labels().find("warmpool.io/pool");
      if (it == sb.labels().end() || pools.count(it->second) == 0) continue;
      grpc::Status s;
      {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + 30s);
        cri::StopPodSandboxRequest req;
        req.set_pod_sandbox_id(sb.id());
        cri::StopPodSandboxResponse resp;
        s = stub->StopPodSandbox(&ctx, req, &resp);
      }
      if (s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + 30s);
        cri::RemovePodSandboxRequest req;
        req.set_pod_sandbox_id(sb.id());
        cri::RemovePodSandboxResponse resp;
        s = stub->RemovePodSandbox(&ctx, req, &resp);
      }
      if (s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND) {
        result.removed.push_back("sandbox " + sb.id() + " (pool " + it->second + ")");
      } else {
        result.problems.push_back("sandbox " + sb.id() + ": " + StatusString(s));
      }
    }
  }

  // 3. The cgroup directories, leaf first, in every hierarchy. A group whose
  // last task just exited can refuse rmdir for a moment: retry.
  for (const std::string& h : CgroupHierarchies()) {
    const std::string top = std::string(kCgroupRoot) + "/" + h + pool_cgroup_parent;
    std::error_code ec;
    if (!fs::is_directory(top, ec)) continue;
    bool gone = WaitFor(
        [&] {
          std::vector<std::string> dirs = {top};
          std::error_code walk_ec;
          for (auto it = fs::recursive_directory_iterator(top, walk_ec);
               !walk_ec && it != fs::recursive_directory_iterator(); it.increment(walk_ec)) {
            if (it->is_directory()) dirs.push_back(it->path().string());
          }
          std::sort(dirs.rbegin(), dirs.rend());  // children before parents
          for (const std::string& d : dirs) {
            if (::rmdir(d.c_str()) == 0) result.removed.push_back("cgroup " + d);
          }
          return !fs::exists(top);
        },
        10s, 50ms);
    if (!gone) result.problems.push_back("cgroup " + top + " could not be removed");
  }
  return result;
}

std::string RestartContainerd(std::chrono::milliseconds timeout) {
  const std::string dir = Getenv("WP_TEST_DIR");
  const std::string config = Getenv("WP_TEST_CONTAINERD_CONFIG");
  const std::string log = Getenv("WP_TEST_CONTAINERD_LOG");
  const std::string sock = Getenv("WP_TEST_CONTAINERD_SOCK");
  if (dir.empty() || config.empty() || log.empty() || sock.empty()) {
    return "WP_TEST_DIR, WP_TEST_CONTAINERD_CONFIG, _LOG or _SOCK unset";
  }
  const std::string pidfile = dir + "/containerd.pid";
  auto pid_text = ReadWholeFile(pidfile);
  if (!pid_text) return "cannot read " + pidfile;
  const pid_t old_pid = static_cast<pid_t>(std::atol(pid_text->c_str()));
  auto comm = ReadWholeFile("/proc/" + std::to_string(old_pid) + "/comm");
  if (old_pid <= 1 || !comm || *comm != "containerd\n") {
    return "pid " + std::to_string(old_pid) + " from " + pidfile + " is not containerd";
  }
  const std::string binary = FindInPath("containerd");
  if (binary.empty()) return "no containerd in PATH";

  if (::kill(old_pid, SIGTERM) != 0)
    return "kill " + std::to_string(old_pid) + ": " + std::strerror(errno);
  if (!WaitFor([&] { return PidGone(old_pid); }, timeout, 20ms)) {
    return "containerd " + std::to_string(old_pid) + " did not exit within " +
           std::to_string(timeout.count()) + " ms of SIGTERM";
  }

  // Start it as the harness does: `setsid containerd --config CONFIG`,
  // stdin /dev/null, output appended to the log. Double fork, so the new
  // containerd is nobody's child here (it must outlive this test process,
  // and the harness's stop must find it by the pid file).
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const char* argv[] = {binary.c_str(), "--config", config.c_str(), nullptr};
  pid_t middle = ::fork();
  if (middle < 0) return std::string("fork: ") + std::strerror(errno);
  if (middle == 0) {
    // Only async-signal-safe calls until exec.
    ::setsid();
    pid_t child = ::fork();
    if (child == 0) {
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      int devnull = ::open("/dev/null", O_RDONLY);
      if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
      }
      ::execve(binary.c_str(), const_cast<char* const*>(argv), envp.data());
      ::_exit(127);
    }
    (void)!::write(pipefd[1], &child, sizeof(child));
    ::_exit(child > 0 ? 0 : 1);
  }
  ::close(pipefd[1]);
  pid_t new_pid = -1;
  ssize_t n = ::read(pipefd[0], &new_pid, sizeof(new_pid));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(middle, &status, 0);
  if (n != sizeof(new_pid) || new_pid <= 0) return "could not start containerd";
  {
    std::ofstream out(pidfile, std::ios::trunc);
    out << new_pid << "\n";
  }
  if (!WaitFor(
          [&] {
            if (PidGone(new_pid)) return true;
            return CriAnswers(sock);
          },
          timeout, 50ms)) {
    return "restarted containerd (pid " + std::to_string(new_pid) + ") does not answer CRI on " +
           sock + " within " + std::to_string(timeout.count()) + " ms";
  }
  if (PidGone(new_pid)) return "restarted containerd exited at once (see " + log + ")";
  return "";
}

}  // namespace warmpool::testing
