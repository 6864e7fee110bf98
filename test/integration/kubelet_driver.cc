#include "test/integration/kubelet_driver.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>

#include <fstream>
#include <random>
#include <sstream>
#include <system_error>
#include <thread>

namespace warmpool::testing {
namespace {

constexpr int kMaxMessageBytes = 16 * 1024 * 1024;  // kubelet's CRI limit

std::string RandomHex(size_t chars) {
  static thread_local std::mt19937_64 rng{std::random_device{}() ^ static_cast<uint64_t>(::getpid())
                                                                       << 32};
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < chars; ++i) s.push_back(kHex[rng() % 16]);
  return s;
}

// A v4-shaped UUID, like the API server gives pods.
std::string NewUid() {
  std::string h = RandomHex(32);
  h[12] = '4';
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

void WriteFile(const std::filesystem::path& path, const std::string& content) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::trunc);
  out << content;
}

bool IsOkOrNotFound(const grpc::Status& s) {
  return s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND;
}

// Mount points of every cgroup (v1) and cgroup2 hierarchy on this machine.
std::vector<std::string> CgroupMounts() {
  std::vector<std::string> mounts;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mount-point options... - fstype source super
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    fields >> id >> parent >> dev >> root >> mount_point;
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype;
    tail >> fstype;
    if (fstype == "cgroup" || fstype == "cgroup2") mounts.push_back(mount_point);
  }
  return mounts;
}

}  // namespace

std::string Getenv(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<TestBedEnv> TestBedEnv::FromEnvironment() {
  TestBedEnv env;
  env.containerd_sock = Getenv("WP_TEST_CONTAINERD_SOCK");
  if (env.containerd_sock.empty()) return std::nullopt;
  env.pause_image = Getenv("WP_TEST_PAUSE_IMAGE");
  env.app_image = Getenv("WP_TEST_APP_IMAGE");
  env.pod_cidr = Getenv("WP_TEST_POD_CIDR");
  env.cgroup_parent = Getenv("WP_TEST_CGROUP_PARENT");
  env.test_dir = Getenv("WP_TEST_DIR");
  return env;
}

bool TestBedEnv::Required() { return Getenv("WP_TEST_REQUIRE_CONTAINERD") == "1"; }

std::shared_ptr<grpc::Channel> ConnectCri(const std::string& socket_path) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Each driver gets its own connection, as kubelet has its own.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("unix:" + socket_path, grpc::InsecureChannelCredentials(), args);
}

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

std::optional<HttpResponse> HttpGet(const std::string& ip, int port, const std::string& path,
                                    Clock::time_point deadline) {
  auto remaining_ms = [&] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return static_cast<int>(std::max<int64_t>(0, left.count()));
  };
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) return std::nullopt;

  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) return std::nullopt;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, remaining_ms()) != 1) return std::nullopt;
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return std::nullopt;
  }

  const std::string request =
      "GET " + path + " HTTP/1.0\r\nHost: " + ip + "\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return std::nullopt;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, remaining_ms()) != 1) return std::nullopt;
  }

  std::string raw;
  char buf[4096];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      raw.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) break;
    if (errno != EAGAIN && errno != EINTR) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms()) != 1) return std::nullopt;
  }

  // "HTTP/1.x NNN reason\r\n headers \r\n\r\n body"
  if (raw.rfind("HTTP/1.", 0) != 0 || raw.size() < 12) return std::nullopt;
  HttpResponse response;
  response.status = std::atoi(raw.substr(9, 3).c_str());
  size_t body = raw.find("\r\n\r\n");
  if (body == std::string::npos) return std::nullopt;
  response.body = raw.substr(body + 4);
  return response;
}

std::optional<HttpResponse> WaitForHttp(const std::string& ip, int port, const std::string& path,
                                        std::chrono::milliseconds timeout, int want_status) {
  std::optional<HttpResponse> last;
  const auto deadline = Clock::now() + timeout;
  WaitFor(
      [&] {
        auto attempt_deadline = std::min(deadline, Clock::now() + std::chrono::seconds(2));
        last = HttpGet(ip, port, path, attempt_deadline);
        return last && last->status == want_status;
      },
      timeout);
  if (last && last->status == want_status) return last;
  return std::nullopt;
}

std::string StatusString(const grpc::Status& status) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  int code = static_cast<int>(status.error_code());
  std::string name = (code >= 0 && code <= 16) ? kNames[code] : std::to_string(code);
  return name + ": " + status.error_message();
}

// ---------------------------------------------------------------------------

KubeletDriver::KubeletDriver(Options options) : options_(std::move(options)) {
  channel_ = ConnectCri(options_.endpoint);
  runtime_ = cri::RuntimeService::NewStub(channel_);
  images_ = cri::ImageService::NewStub(channel_);
}

KubeletDriver::~KubeletDriver() { Cleanup(); }

std::string KubeletDriver::UniqueToken() {
  static std::atomic<int> counter{0};
  return RandomHex(6) + std::to_string(counter.fetch_add(1));
}

std::unique_ptr<grpc::ClientContext> KubeletDriver::NewContext() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + options_.rpc_timeout);
  return ctx;
}

cri::PodSandboxConfig KubeletDriver::MakeSandboxConfig(const PodSpec& spec) {
  const std::string uid = spec.uid.empty() ? NewUid() : spec.uid;
  cri::PodSandboxConfig config;
  auto* md = config.mutable_metadata();
  md->set_name(spec.name);
  md->set_uid(uid);
  md->set_namespace_(spec.ns);
  md->set_attempt(spec.attempt);
  config.set_hostname(spec.name);

  // kubelet: /var/log/pods/<namespace>_<name>_<uid>
  auto log_dir = options_.work_dir / "pods" / (spec.ns + "_" + spec.name + "_" + uid);
  std::filesystem::create_directories(log_dir);
  config.set_log_directory(log_dir.string());

  // Every test pod resolves through loopback only: nothing leaves the machine.
  auto* dns = config.mutable_dns_config();
  dns->add_servers("127.0.0.1");
  dns->add_searches(spec.ns + ".svc.cluster.local");
  dns->add_searches("svc.cluster.local");
  dns->add_searches("cluster.local");
  dns->add_options("ndots:5");

  for (const auto& pm : spec.port_mappings) *config.add_port_mappings() = pm;

  auto& labels = *config.mutable_labels();
  for (const auto& [k, v] : spec.labels) labels[k] = v;
  labels["io.kubernetes.pod.name"] = spec.name;
  labels["io.kubernetes.pod.namespace"] = spec.ns;
  labels["io.kubernetes.pod.uid"] = uid;

  auto& annotations = *config.mutable_annotations();
  for (const auto& [k, v] : spec.annotations) annotations[k] = v;
  annotations["kubernetes.io/config.source"] = "api";
  annotations["kubernetes.io/config.seen"] = "2024-01-01T00:00:00.000000000Z";

  auto* linux = config.mutable_linux();
  linux->set_cgroup_parent(options_.cgroup_parent + "/pod" + uid);
  auto* sc = linux->mutable_security_context();
  auto* ns = sc->mutable_namespace_options();
  ns->set_network(cri::POD);
  ns->set_pid(cri::CONTAINER);
  ns->set_ipc(cri::POD);
  // kubelet asks RuntimeDefault for every sandbox, whatever the pod says.
  sc->mutable_seccomp()->set_profile_type(cri::SecurityProfile::RuntimeDefault);
  // Pod-level resources (kubelet >= 1.26 sends the sum of the containers').
  auto* res = linux->mutable_resources();
  res->set_cpu_period(100000);
  int64_t shares = 0, memory = 0;
  for (const auto& c : spec.containers) {
    shares += c.cpu_shares;
    memory += c.memory_limit_bytes;
  }
  res->set_cpu_shares(std::max<int64_t>(shares, 2));
  if (memory > 0) res->set_memory_limit_in_bytes(memory);
  return config;
}

cri::ContainerConfig KubeletDriver::MakeContainerConfig(const PodRun& run, size_t index,
                                                        const std::string& image_id) {
  const PodSpec& spec = run.spec;
  const PodSpec::Container& c = spec.containers.at(index);
  const std::string uid = run.sandbox_config.metadata().uid();
  const auto pod_dir = options_.work_dir / "kubelet" / "pods" / uid;

  cri::ContainerConfig config;
  config.mutable_metadata()->set_name(c.name);
  config.mutable_metadata()->set_attempt(c.attempt);
  config.mutable_image()->set_image(image_id);
  config.mutable_image()->set_user_specified_image(c.image.empty() ? options_.app_image : c.image);
  for (const auto& s : c.command) config.add_command(s);
  for (const auto& s : c.args) config.add_args(s);

  auto add_env = [&](const std::string& k, const std::string& v) {
    auto* kv = config.add_envs();
    kv->set_key(k);
    kv->set_value(v);
  };
  for (const auto& [k, v] : c.env) add_env(k, v);
  // What kubelet adds for the default "kubernetes" service.
  add_env("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  add_env("KUBERNETES_SERVICE_PORT", "443");
  add_env("KUBERNETES_PORT", "tcp://10.96.0.1:443");

  // kubelet's per-pod files: etc-hosts, the termination log, and the
  // projected service account volume.
  const auto etc_hosts = pod_dir / "etc-hosts";
  WriteFile(etc_hosts, "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost\n" +
                           run.pod_ip + "\t" + spec.name + "\n");
  // kubelet names it with 8 random hex digits; derived from the container's
  // name and attempt here, so two runs of one spec write the same path.
  char term_name[9];
  std::snprintf(
      term_name, sizeof(term_name), "%08x",
      static_cast<unsigned>(std::hash<std::string>{}(c.name + "/" + std::to_string(c.attempt))));
  const auto termination_log = pod_dir / "containers" / c.name / term_name;
  WriteFile(termination_log, "");
  const auto token_dir = pod_dir / "volumes" / "kubernetes.io~projected" / "kube-api-access";
  WriteFile(token_dir / "token", "test-token\n");
  WriteFile(token_dir / "namespace", spec.ns);
  auto add_mount = [&](const std::string& container_path, const std::filesystem::path& host_path,
                       bool readonly) {
    auto* m = config.add_mounts();
    m->set_container_path(container_path);
    m->set_host_path(host_path.string());
    m->set_readonly(readonly);
  };
  add_mount("/var/run/secrets/kubernetes.io/serviceaccount", token_dir, true);
  add_mount("/etc/hosts", etc_hosts, false);
  add_mount("/dev/termination-log", termination_log, false);

  auto& labels = *config.mutable_labels();
  labels["io.kubernetes.container.name"] = c.name;
  labels["io.kubernetes.pod.name"] = spec.name;
  labels["io.kubernetes.pod.namespace"] = spec.ns;
  labels["io.kubernetes.pod.uid"] = uid;
  auto& annotations = *config.mutable_annotations();
  annotations["io.kubernetes.container.hash"] = "5a1c2b3d";
  annotations["io.kubernetes.container.restartCount"] = std::to_string(c.attempt);
  annotations["io.kubernetes.container.terminationMessagePath"] = "/dev/termination-log";
  annotations["io.kubernetes.container.terminationMessagePolicy"] = "File";
  annotations["io.kubernetes.pod.terminationGracePeriod"] = "30";

  // kubelet: "<container name>/<restart count>.log", relative to the pod's log directory.
  config.set_log_path(c.name + "/" + std::to_string(c.attempt) + ".log");

  auto* linux = config.mutable_linux();
  auto* res = linux->mutable_resources();
  res->set_cpu_period(100000);
  res->set_cpu_shares(c.cpu_shares);
  if (c.cpu_quota > 0) res->set_cpu_quota(c.cpu_quota);
  if (c.memory_limit_bytes > 0) res->set_memory_limit_in_bytes(c.memory_limit_bytes);
  res->set_oom_score_adj(c.oom_score_adj);
  auto* sc = linux->mutable_security_context();
  auto* ns = sc->mutable_namespace_options();
  ns->set_network(cri::POD);
  ns->set_pid(cri::CONTAINER);
  ns->set_ipc(cri::POD);
  for (const char* p : {"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                        "/sys/devices/virtual/powercap"}) {
    sc->add_masked_paths(p);
  }
  for (const char* p : {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}) {
    sc->add_readonly_paths(p);
  }
  sc->mutable_seccomp()->set_profile_type(cri::SecurityProfile::Unconfined);
  return config;
}

grpc::Status KubeletDriver::RunPodSandbox(const cri::PodSandboxConfig& config,
                                          const std::string& runtime_handler,
                                          cri::RunPodSandboxResponse* out) {
  cri::RunPodSandboxRequest req;
  *req.mutable_config() = config;
  req.set_runtime_handler(runtime_handler);
  pod_uids_.push_back(config.metadata().uid());
  auto ctx = NewContext();
  grpc::Status s = runtime_->RunPodSandbox(ctx.get(), req, out);
  if (s.ok()) sandbox_ids_.push_back(out->pod_sandbox_id());
  return s;
}

grpc::Status KubeletDriver::PodSandboxStatus(const std::string& sandbox_id, bool verbose,
                                             cri::PodSandboxStatusResponse* out) {
  cri::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(sandbox_id);
  req.set_verbose(verbose);
  auto ctx = NewContext();
  return runtime_->PodSandboxStatus(ctx.get(), req, out);
}

grpc::Status KubeletDriver::ImageStatus(const std::string& image, cri::ImageStatusResponse* out) {
  cri::ImageStatusRequest req;
  req.mutable_image()->set_image(image);
  auto ctx = NewContext();
  return images_->ImageStatus(ctx.get(), req, out);
}

grpc::Status KubeletDriver::PullImage(const std::string& image,
                                      const cri::PodSandboxConfig& sandbox_config,
                                      cri::PullImageResponse* out) {
  cri::PullImageRequest req;
  req.mutable_image()->set_image(image);
  *req.mutable_sandbox_config() = sandbox_config;
  auto ctx = NewContext();
  return images_->PullImage(ctx.get(), req, out);
}

grpc::Status KubeletDriver::CreateContainer(const std::string& sandbox_id,
                                            const cri::ContainerConfig& config,
                                            const cri::PodSandboxConfig& sandbox_config,
                                            cri::CreateContainerResponse* out) {
  cri::CreateContainerRequest req;
  req.set_pod_sandbox_id(sandbox_id);
  *req.mutable_config() = config;
  *req.mutable_sandbox_config() = sandbox_config;
  auto ctx = NewContext();
  grpc::Status s = runtime_->CreateContainer(ctx.get(), req, out);
  if (s.ok()) container_ids_.push_back(out->container_id());
  return s;
}

grpc::Status KubeletDriver::StartContainer(const std::string& container_id,
                                           cri::StartContainerResponse* out) {
  cri::StartContainerRequest req;
  req.set_container_id(container_id);
  auto ctx = NewContext();
  return runtime_->StartContainer(ctx.get(), req, out);
}

grpc::Status KubeletDriver::ContainerStatus(const std::string& container_id, bool verbose,
                                            cri::ContainerStatusResponse* out) {
  cri::ContainerStatusRequest req;
  req.set_container_id(container_id);
  req.set_verbose(verbose);
  auto ctx = NewContext();
  return runtime_->ContainerStatus(ctx.get(), req, out);
}

grpc::Status KubeletDriver::ListPodSandbox(const cri::PodSandboxFilter* filter,
                                           cri::ListPodSandboxResponse* out) {
  cri::ListPodSandboxRequest req;
  if (filter) *req.mutable_filter() = *filter;
  auto ctx = NewContext();
  return runtime_->ListPodSandbox(ctx.get(), req, out);
}

grpc::Status KubeletDriver::ListContainers(const cri::ContainerFilter* filter,
                                           cri::ListContainersResponse* out) {
  cri::ListContainersRequest req;
  if (filter) *req.mutable_filter() = *filter;
  auto ctx = NewContext();
  return runtime_->ListContainers(ctx.get(), req, out);
}

grpc::Status KubeletDriver::ExecSync(const std::string& container_id,
                                     const std::vector<std::string>& cmd, int64_t timeout_seconds,
                                     cri::ExecSyncResponse* out) {
  cri::ExecSyncRequest req;
  req.set_container_id(container_id);
  for (const auto& s : cmd) req.add_cmd(s);
  req.set_timeout(timeout_seconds);
  auto ctx = NewContext();
  return runtime_->ExecSync(ctx.get(), req, out);
}

grpc::Status KubeletDriver::ContainerStats(const std::string& container_id,
                                           cri::ContainerStatsResponse* out) {
  cri::ContainerStatsRequest req;
  req.set_container_id(container_id);
  auto ctx = NewContext();
  return runtime_->ContainerStats(ctx.get(), req, out);
}

grpc::Status KubeletDriver::StopContainer(const std::string& container_id, int64_t timeout_seconds,
                                          cri::StopContainerResponse* out) {
  cri::StopContainerRequest req;
  req.set_container_id(container_id);
  req.set_timeout(timeout_seconds);
  auto ctx = NewContext();
  return runtime_->StopContainer(ctx.get(), req, out);
}

grpc::Status KubeletDriver::RemoveContainer(const std::string& container_id,
                                            cri::RemoveContainerResponse* out) {
  cri::RemoveContainerRequest req;
  req.set_container_id(container_id);
  auto ctx = NewContext();
  return runtime_->RemoveContainer(ctx.get(), req, out);
}

grpc::Status KubeletDriver::StopPodSandbox(const std::string& sandbox_id,
                                           cri::StopPodSandboxResponse* out) {
  cri::StopPodSandboxRequest req;
  req.set_pod_sandbox_id(sandbox_id);
  auto ctx = NewContext();
  return runtime_->StopPodSandbox(ctx.get(), req, out);
}

grpc::Status KubeletDriver::RemovePodSandbox(const std::string& sandbox_id,
                                             cri::RemovePodSandboxResponse* out) {
  cri::RemovePodSandboxRequest req;
  req.set_pod_sandbox_id(sandbox_id);
  auto ctx = NewContext();
  return runtime_->RemovePodSandbox(ctx.get(), req, out);
}

grpc::Status KubeletDriver::Version(cri::VersionResponse* out) {
  cri::VersionRequest req;
  req.set_version("v1");
  auto ctx = NewContext();
  return runtime_->Version(ctx.get(), req, out);
}

grpc::Status KubeletDriver::EnsureImage(const std::string& image,
                                        const cri::PodSandboxConfig& sandbox_config, PodRun* run,
                                        std::string* image_id) {
  cri::ImageStatusResponse status;
  grpc::Status s = ImageStatus(image, &status);
  if (run) run->image_status.push_back(status);
  if (!s.ok()) return s;
  if (status.has_image() && !status.image().id().empty()) {
    *image_id = status.image().id();
    return grpc::Status::OK;
  }
  cri::PullImageResponse pulled;
  s = PullImage(image, sandbox_config, &pulled);
  if (run) run->pulls.push_back(pulled);
  if (!s.ok()) return s;
  *image_id = pulled.image_ref();
  return grpc::Status::OK;
}

grpc::Status KubeletDriver::StartPod(const PodSpec& spec, PodRun* run) {
  run->spec = spec;
  run->sandbox_config = MakeSandboxConfig(spec);
  const std::string uid = run->sandbox_config.metadata().uid();
  run->spec.uid = uid;

  grpc::Status s = RunPodSandbox(run->sandbox_config, spec.runtime_handler, &run->run_sandbox);
  if (!s.ok()) return s;
  run->sandbox_id = run->run_sandbox.pod_sandbox_id();

  s = PodSandboxStatus(run->sandbox_id, false, &run->sandbox_status);
  if (!s.ok()) return s;
  run->pod_ip = run->sandbox_status.status().network().ip();

  for (size_t i = 0; i < spec.containers.size(); ++i) {
    const auto& c = spec.containers[i];
    const std::string image = c.image.empty() ? options_.app_image : c.image;
    std::string image_id;
    s = EnsureImage(image, run->sandbox_config, run, &image_id);
    if (!s.ok()) return s;

    cri::ContainerConfig config = MakeContainerConfig(*run, i, image_id);
    run->container_configs.push_back(config);

    cri::CreateContainerResponse created;
    s = CreateContainer(run->sandbox_id, config, run->sandbox_config, &created);
    run->create_container.push_back(created);
    if (!s.ok()) return s;
    run->container_ids.push_back(created.container_id());

    cri::StartContainerResponse started;
    s = StartContainer(created.container_id(), &started);
    run->start_container.push_back(started);
    if (!s.ok()) return s;

    cri::ContainerStatusResponse status;
    s = ContainerStatus(created.container_id(), false, &status);
    run->container_status.push_back(status);
    if (!s.ok()) return s;
  }
  return grpc::Status::OK;
}

grpc::Status KubeletDriver::StopAndRemovePod(const PodRun& run) {
  cri::StopPodSandboxResponse stopped;
  grpc::Status s = StopPodSandbox(run.sandbox_id, &stopped);
  if (!s.ok()) return s;
  cri::RemovePodSandboxResponse removed;
  s = RemovePodSandbox(run.sandbox_id, &removed);
  if (!s.ok()) return s;
  RemovePodCgroups(run.sandbox_config.metadata().uid());
  return grpc::Status::OK;
}

void KubeletDriver::CreatePodCgroups(const std::string& uid) {
  if (options_.cgroup_parent.empty() || options_.cgroup_parent.front() != '/' || uid.empty()) {
    return;
  }
  pod_uids_.push_back(uid);
  for (const auto& mount : CgroupMounts()) {
    const std::filesystem::path parent =
        std::filesystem::path(mount) / options_.cgroup_parent.substr(1);
    const std::filesystem::path dir = parent / ("pod" + uid);
    if (::mkdir(dir.c_str(), 0755) != 0) continue;  // no parent in this hierarchy, or exists
    if (!std::filesystem::exists(dir / "cgroup.clone_children")) continue;  // cgroup2
    for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
      if (!std::filesystem::exists(dir / file)) break;  // not the cpuset hierarchy
      std::ifstream in(parent / file);
      std::string value;
      std::getline(in, value);
      std::ofstream(dir / file) << value;
    }
  }
}

void KubeletDriver::RemovePodCgroups(const std::string& uid) {
  if (options_.cgroup_parent.empty() || uid.empty()) return;
  // kubelet creates and removes the pod cgroup itself; runc only creates the
  // container's below it. rmdir only succeeds on an empty group, so this
  // never removes anything still in use.
  for (const auto& mount : CgroupMounts()) {
    std::filesystem::path dir =
        std::filesystem::path(mount) /
        options_.cgroup_parent.substr(options_.cgroup_parent.front() == '/' ? 1 : 0) /
        ("pod" + uid);
    ::rmdir(dir.c_str());
  }
}

std::string KubeletDriver::Cleanup() {
  std::string problems;
  if (sandbox_ids_.empty() && container_ids_.empty() && pod_uids_.empty()) return problems;

  std::shared_ptr<grpc::Channel> channel =
      options_.cleanup_endpoint.empty() ? channel_ : ConnectCri(options_.cleanup_endpoint);
  auto runtime = cri::RuntimeService::NewStub(channel);
  auto context = [&] {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return ctx;
  };

  for (auto it = container_ids_.rbegin(); it != container_ids_.rend(); ++it) {
    cri::RemoveContainerRequest req;
    req.set_container_id(*it);
    cri::RemoveContainerResponse resp;
    auto ctx = context();
    grpc::Status s = runtime->RemoveContainer(ctx.get(), req, &resp);
    if (!IsOkOrNotFound(s)) problems += "RemoveContainer " + *it + ": " + StatusString(s) + "\n";
  }
  for (auto it = sandbox_ids_.rbegin(); it != sandbox_ids_.rend(); ++it) {
    cri::StopPodSandboxRequest stop;
    stop.set_pod_sandbox_id(*it);
    cri::StopPodSandboxResponse stopped;
    auto ctx = context();
    grpc::Status s = runtime->StopPodSandbox(ctx.get(), stop, &stopped);
    if (!IsOkOrNotFound(s)) problems += "StopPodSandbox " + *it + ": " + StatusString(s) + "\n";
    cri::RemovePodSandboxRequest remove;
    remove.set_pod_sandbox_id(*it);
    cri::RemovePodSandboxResponse removed;
    auto ctx2 = context();
    s = runtime->RemovePodSandbox(ctx2.get(), remove, &removed);
    if (!IsOkOrNotFound(s)) {
      problems += "RemovePodSandbox " + *it + ": " + StatusString(s) + "\n";
    }
  }
  for (const auto& uid : pod_uids_) RemovePodCgroups(uid);
  if (problems.empty()) {
    container_ids_.clear();
    sandbox_ids_.clear();
    pod_uids_.clear();
  }
  return problems;
}

}  // namespace warmpool::testing
