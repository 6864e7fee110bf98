// warmpoold: the per-node daemon kubelet talks to instead of containerd.
//
// Start-up, in order: parse and validate the config (refuse to start on any
// error, with file:line:col), set up logging, find the cgroup hierarchies,
// dial the upstream runtime, start serving on the CRI socket (pass-through
// with pool objects hidden) and the admin socket; once the upstream answers,
// recover the pools' entries, start filling, and report READY=1.
// Signals are handled on the main thread: SIGTERM/SIGINT stop (in-flight calls
// finish or are cancelled, the socket is removed), SIGHUP reloads the config.

#include <grpcpp/grpcpp.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cri/metrics.h"
#include "cri/proxy.h"
#include "cri/server.h"
#include "cri/upstream.h"
#include "cri_runtime_v1.grpc.pb.h"
#include "daemon/admin_server.h"
#include "daemon/cgroups.h"
#include "daemon/systemd_cgroups.h"
#include "daemon/config.h"
#include "daemon/failpoint.h"
#include "daemon/handoff.h"
#include "daemon/late_network.h"
#include "daemon/metrics.h"
#include "daemon/metrics_http.h"
#include "daemon/notify.h"
#include "daemon/pool_manager.h"
#include "daemon/pool_objects.h"
#include "daemon/read_filter.h"
#include "daemon/runtime_client.h"
#include "daemon/socket_activation.h"
#include "daemon/state_store.h"

namespace warmpool {
namespace {

constexpr const char* kDefaultConfigPath = "/etc/warmpool.toml";
constexpr auto kShutdownGrace = std::chrono::seconds(5);

void SetUpLogging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("warmpoold");
  // Under systemd the journal stamps each line; by hand a timestamp helps.
  if (getenv("JOURNAL_STREAM") != nullptr) {
    logger->set_pattern("%l %v");
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::info);
}

// Asks the upstream runtime for its version; used for readiness and to log
// transitions of the upstream's availability.
class UpstreamProbe {
 public:
  explicit UpstreamProbe(std::shared_ptr<grpc::Channel> channel)
      : stub_(runtime::v1::RuntimeService::NewStub(std::move(channel))) {}

  bool Check() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    runtime::v1::VersionRequest req;
    req.set_version("v1");
    runtime::v1::VersionResponse resp;
    grpc::Status s = stub_->Version(&ctx, req, &resp);
    const bool up = s.ok();
    if (up && !was_up_) {
      spdlog::info("upstream ready: {} {} (CRI {})", resp.runtime_name(), resp.runtime_version(),
                   resp.runtime_api_version());
    } else if (!up && (was_up_ || first_)) {
      spdlog::warn("upstream unavailable: {}: {}; calls fail with UNAVAILABLE until it is back",
                   cri::StatusCodeName(s.error_code()), s.error_message());
    }
    was_up_ = up;
    first_ = false;
    return up;
  }

 private:
  std::unique_ptr<runtime::v1::RuntimeService::Stub> stub_;
  bool was_up_ = false;
  bool first_ = true;
};

// Serves the CRI on the socket systemd passed (warmpool.socket), else on
// daemon.listen bound here.
absl::StatusOr<std::unique_ptr<cri::CriServer>> StartCriServer(
    const std::string& listen, grpc::CallbackGenericService* service) {
  auto activation = TakeActivationSocket(listen);
  if (!activation.ok()) return activation.status();
  if (!activation->has_value()) {
    auto server = cri::CriServer::Start(listen, service);
    if (server.ok()) spdlog::info("serving CRI on {}", (*server)->path());
    return server;
  }
  const ActivationSocket& passed = **activation;
  if (!passed.warning.empty()) spdlog::warn("socket activation: {}", passed.warning);
  auto server = cri::CriServer::StartOnListeningFd(passed.fd, service);
  if (!server.ok()) {
    close(passed.fd);
    return server.status();
  }
  spdlog::info("serving CRI on {} (socket activation, fd {})", (*server)->path(), passed.fd);
  return server;
}

int Run(const Config& config, const std::string& config_path) {
  SetUpLogging(config.daemon.log_level);
  spdlog::info("warmpoold {} starting: listen={} upstream={} config={}", WARMPOOL_VERSION,
               config.daemon.listen, config.daemon.upstream, config_path);
  if (!ArmedFailPoint().empty()) {
    spdlog::warn(
        "WARMPOOL_FAILPOINT={}: this daemon kills itself at that point (tests only; "
        "never set it in production)",
        ArmedFailPoint());
  }

  // Signals are taken synchronously by the main thread; block them before
  // gRPC starts its threads so none of those receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  SystemdNotifier notifier;
  auto layout = CgroupLayout::Detect();
  if (!layout.ok()) {
    spdlog::critical("cannot find the cgroup hierarchies: {}",
                     std::string(layout.status().message()));
    return 1;
  }
  Cgroups cgroups(*layout);
  spdlog::info("cgroups: {}; freezer {}", cgroups.DescribeBackends(),
               cgroups.freezer_version() == CgroupVersion::kV1 ? "v1" : "v2");
  std::optional<bool> slow_cgroup_moves;
  if (struct utsname u; uname(&u) == 0) {
    const std::string advice = SlowCgroupMoveAdvice(*layout, u.release);
    slow_cgroup_moves = !advice.empty();
    if (*slow_cgroup_moves) spdlog::info("cgroups: {}", advice);
  }
  // Containers go where the cgroup parent says: cgroupfs, or systemd slices
  // through sd-bus (connected on first use).
  SdBusSystemd systemd;
  ContainerCgroups container_cgroups(&cgroups, &systemd);
  DriverEntryCgroups entry_cgroups(&cgroups, &container_cgroups);

  cri::RpcMetrics metrics;
  std::shared_ptr<grpc::Channel> upstream = cri::DialUpstream(config.daemon.upstream);
  auto store = StateStore::Open(config.daemon.state_dir + "/adopted");
  if (!store.ok()) {
    spdlog::critical("cannot open the state store: {}", std::string(store.status().message()));
    return 1;
  }
  for (const auto& problem : (*store)->load_problems()) {
    spdlog::error("state store: {}: {} (moved to {})", problem.file, problem.reason,
                  problem.moved_to);
  }
  PoolObjects pool_objects;
  GrpcRuntimeClient runtime(upstream);
  prom::LabeledHistograms entry_create(EntryCreateBuckets());
  PoolManagerOptions pool_options;
  pool_options.on_entry_frozen = [&entry_create](const std::string& pool,
                                                 std::chrono::steady_clock::duration took) {
    entry_create.Observe(pool, took);
  };
  PoolManager pools(&runtime, &entry_cgroups, &pool_objects, pool_options);
  pools.SetDaemonConfig(config.daemon);  // before handoff.Recover() rolls entries back
  Handoff handoff(&pools, &pool_objects, store->get(), &cgroups, &runtime,
                  config.daemon.containerd_root);
  handoff.set_container_cgroups(&container_cgroups);
  LateNetwork late_network(&runtime);
  late_network.Configure(config.daemon);
  handoff.SetLateNetwork(&late_network);
  PoolReadFilter read_filter(&pool_objects, &handoff);
  // Calls wait for recovery only when there is something to recover: with no
  // hand-off record no read can show an adopted pod as a pool entry.
  if ((*store)->All().empty()) read_filter.SetReady();
  cri::PassthroughService passthrough(upstream, &metrics, &read_filter);

  // When containerd answers at start (the usual case), recover before
  // serving: no read may show an adopted pod as the pool entry it was. If it
  // does not, recovery runs once it does (below).
  UpstreamProbe probe(upstream);
  Config current = config;
  bool recovered = false;
  if (probe.Check()) {
    absl::Status s = handoff.Recover();
    if (s.ok()) read_filter.SetReady();
    if (s.ok()) s = pools.Start(current);
    if (!s.ok()) {
      spdlog::critical("pools: {}", std::string(s.message()));
      return 1;
    }
    recovered = true;
  }
  auto server = StartCriServer(config.daemon.listen, &passthrough);
  if (!server.ok()) {
    spdlog::critical("cannot serve: {}", std::string(server.status().message()));
    return 1;
  }
  auto admin = AdminServer::Start(config.daemon.admin, &pools, &handoff.decisions());
  if (!admin.ok()) {
    spdlog::critical("cannot serve the admin API: {}", std::string(admin.status().message()));
    (*server)->Shutdown(std::chrono::milliseconds(0));
    return 1;
  }
  std::unique_ptr<MetricsHttpServer> metrics_http;
  if (!config.daemon.metrics_address.empty()) {
    MetricsSources sources{&pools,        &handoff.decisions(), &metrics,
                           &entry_create, WARMPOOL_VERSION,     slow_cgroup_moves};
    auto started = MetricsHttpServer::Start(config.daemon.metrics_address,
                                            [sources] { return RenderMetrics(sources); });
    if (!started.ok()) {
      spdlog::critical("{} (daemon.metrics)", std::string(started.status().message()));
      (*admin)->Shutdown();
      (*server)->Shutdown(std::chrono::milliseconds(0));
      return 1;
    }
    metrics_http = std::move(*started);
    spdlog::info("serving metrics on http://{}/metrics", metrics_http->bound_address());
  }

  bool ready = false;
  const auto watchdog = notifier.WatchdogInterval();
  // Wake at half the watchdog interval (systemd's advice), at most every second.
  auto tick = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::seconds(1));
  if (watchdog && *watchdog / 2 < tick) tick = *watchdog / 2;
  auto next_probe = std::chrono::steady_clock::now();

  for (;;) {
    if (std::chrono::steady_clock::now() >= next_probe) {
      const bool up = probe.Check();
      if (up && !ready) {
        // Recovery needs the upstream; READY=1 only once it is done. Adopted
        // pods first, so the pools never mistake them for their entries.
        absl::Status s;
        if (!recovered) s = handoff.Recover();
        if (s.ok()) read_filter.SetReady();
        if (s.ok() && !recovered) s = pools.Start(current);
        if (!s.ok()) {
          spdlog::critical("pools: {}", std::string(s.message()));
          (*admin)->Shutdown();
          (*server)->Shutdown(kShutdownGrace);
          return 1;
        }
        ready = true;
        notifier.Ready();
        notifier.Status("serving; upstream " + config.daemon.upstream + " reachable");
      } else if (!up && ready) {
        notifier.Status("serving; upstream " + config.daemon.upstream + " unavailable");
      }
      next_probe = std::chrono::steady_clock::now() +
                   (up ? std::chrono::seconds(5) : std::chrono::milliseconds(500));
    }
    // The watchdog says "the daemon's loop is alive", not "containerd is up":
    // restarting warmpoold would not bring containerd back.
    if (watchdog) notifier.Watchdog();

    timespec timeout{};
    timeout.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(tick).count();
    timeout.tv_nsec = (tick % std::chrono::seconds(1)).count();
    siginfo_t info{};
    int sig = sigtimedwait(&signals, &info, &timeout);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("received {}, stopping: finishing in-flight calls (grace {}s)",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT", kShutdownGrace.count());
      notifier.Stopping();
      (*server)->Shutdown(kShutdownGrace);
      (*admin)->Shutdown();
      if (metrics_http) metrics_http->Stop();
      pools.Stop();  // frozen entries stay for the next start
      spdlog::info("stopped");
      return 0;
    }
    if (sig == SIGHUP) {
      notifier.Reloading();
      auto reloaded = LoadConfig(config_path);
      if (!reloaded.ok()) {
        spdlog::error("reload rejected, keeping the running config:\n{}",
                      std::string(reloaded.status().message()));
      } else {
        if (reloaded->daemon.listen != current.daemon.listen ||
            reloaded->daemon.upstream != current.daemon.upstream) {
          spdlog::warn("reload: daemon.listen and daemon.upstream take effect at the next start");
        }
        if (reloaded->daemon.metrics_address != current.daemon.metrics_address) {
          spdlog::warn("reload: daemon.metrics takes effect at the next start");
        }
        spdlog::set_level(spdlog::level::from_str(reloaded->daemon.log_level));
        current = *reloaded;
        late_network.Configure(current.daemon);
        if (ready) pools.ApplyConfig(current);
        spdlog::info("reloaded {}", config_path);
      }
      notifier.Ready();
    }
  }
}

}  // namespace
}  // namespace warmpool

int main(int argc, char** argv) {
  CLI::App app{"warmpoold: pre-warmed pod sandboxes behind the CRI"};
  std::string config_path = warmpool::kDefaultConfigPath;
  std::string check_path;
  bool print_default = false;
  bool version = false;
  auto* config_opt =
      app.add_option("-c,--config", config_path, "config file")->capture_default_str();
  app.add_option("--check-config", check_path, "validate FILE and exit (0: valid)");
  app.add_flag("--print-default-config", print_default, "print the documented default config");
  app.add_flag("--version", version, "print the version");
  CLI11_PARSE(app, argc, argv);

  if (version) {
    std::cout << "warmpoold " << WARMPOOL_VERSION << "\n";
    return 0;
  }
  if (print_default) {
    std::cout << warmpool::DefaultConfigText();
    return 0;
  }
  if (!check_path.empty()) {
    auto config = warmpool::LoadConfig(check_path);
    if (!config.ok()) {
      std::cerr << config.status().message() << "\n";
      return 1;
    }
    std::cout << check_path << ": ok (" << config->pools.size() << " pools)\n";
    return 0;
  }

  warmpool::Config config;
  if (config_opt->count() == 0 && !std::filesystem::exists(config_path)) {
    // No file at the default path: run with the defaults (a pure proxy).
    auto defaults = warmpool::ParseConfig("", "<defaults>");
    if (!defaults.ok()) {
      std::cerr << defaults.status().message() << "\n";
      return 1;
    }
    config = *defaults;
    config_path = "<defaults>";
  } else {
    auto loaded = warmpool::LoadConfig(config_path);
    if (!loaded.ok()) {
      std::cerr << "warmpoold: invalid config, not starting:\n"
                << loaded.status().message() << "\n";
      return 2;
    }
    config = *loaded;
  }
  return warmpool::Run(config, config_path);
}
