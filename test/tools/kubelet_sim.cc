// kubelet-sim: drives one CRI endpoint the way kubelet does for one pod, so a
// person (the README's demo) can watch warmpoold serve a pod without a
// cluster. It uses the same driver as the integration tests.
//
//   kubelet-sim --endpoint SOCK [--name NAME] [--init-seconds S] [--hold]
//
// Starts a pod running the test app, prints each phase's latency, the pod as
// kubelet sees it (PodSandboxStatus, ListPodSandbox) and the app's answer on
// its pod IP. With --hold it keeps the pod until SIGINT/SIGTERM. It always
// removes the pod before exiting. Reads WP_TEST_* from the test bed's env.

#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "test/integration/kubelet_driver.h"

namespace wt = warmpool::testing;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  CLI::App app{"kubelet-sim: kubelet's CRI call sequence for one pod"};
  std::string endpoint, name = "demo", init_seconds = "0";
  bool hold = false;
  app.add_option("--endpoint", endpoint, "CRI unix socket (warmpoold's or containerd's)")
      ->required();
  app.add_option("--name", name, "pod name");
  app.add_option("--init-seconds", init_seconds, "the test app's init time");
  app.add_flag("--hold", hold, "keep the pod until SIGINT/SIGTERM");
  CLI11_PARSE(app, argc, argv);

  auto env = wt::TestBedEnv::FromEnvironment();
  if (!env) {
    std::fprintf(stderr, "kubelet-sim: no test bed env (source DIR/env of test/harness)\n");
    return 2;
  }
  // Signals wait for sigwait below; block them before gRPC makes threads.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  char tmpl[] = "/tmp/wp-sim-XXXXXX";
  std::filesystem::path dir = mkdtemp(tmpl);
  wt::KubeletDriver::Options opts;
  opts.endpoint = endpoint;
  opts.work_dir = dir;
  opts.cgroup_parent = env->cgroup_parent;
  opts.app_image = env->app_image;
  // Clean up straight against containerd: works even if warmpoold is gone.
  opts.cleanup_endpoint = env->containerd_sock;
  int rc = 0;
  {
    wt::KubeletDriver driver(opts);
    wt::PodSpec spec;
    spec.name = name;
    spec.containers[0].env.push_back({"INIT_SECONDS", init_seconds});
    wt::PodRun run;
    const auto t0 = Clock::now();
    grpc::Status s = driver.StartPod(spec, &run);
    const auto started = Clock::now();
    if (!s.ok()) {
      std::fprintf(stderr, "kubelet-sim: starting the pod failed: %s\n",
                   wt::StatusString(s).c_str());
      rc = 1;
    } else {
      auto answer = wt::WaitForHttp(run.pod_ip, 8080, "/", std::chrono::seconds(120));
      const auto serving = Clock::now();
      auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
      const auto& st = run.sandbox_status.status();
      std::printf("pod %s/%s via %s\n", st.metadata().namespace_().c_str(),
                  st.metadata().name().c_str(), endpoint.c_str());
      std::printf("  sandbox   %s  state=%s  ip=%s  handler=%s\n", st.id().substr(0, 13).c_str(),
                  runtime::v1::PodSandboxState_Name(st.state()).c_str(), run.pod_ip.c_str(),
                  st.runtime_handler().empty() ? "(default)" : st.runtime_handler().c_str());
      for (const auto& cs : run.container_status) {
        std::printf("  container %s  %s  state=%s  image=%s\n",
                    cs.status().id().substr(0, 13).c_str(), cs.status().metadata().name().c_str(),
                    runtime::v1::ContainerState_Name(cs.status().state()).c_str(),
                    cs.status().image().image().c_str());
      }
      runtime::v1::ListPodSandboxResponse list;
      if (driver.ListPodSandbox(nullptr, &list).ok()) {
        std::printf("  ListPodSandbox shows %d sandbox(es) on this runtime\n", list.items_size());
      }
      std::printf("  kubelet sequence %.1f ms; app answered %.1f ms after RunPodSandbox: %s",
                  ms(started - t0), ms(serving - t0),
                  answer ? answer->body.c_str() : "(no answer)\n");
      if (!answer) rc = 1;
      std::fflush(stdout);
      if (hold && rc == 0) {
        std::printf("holding the pod; Ctrl-C to remove it\n");
        std::fflush(stdout);
        int sig = 0;
        sigwait(&stop, &sig);
      }
    }
    std::string left = driver.Cleanup();
    if (!left.empty()) {
      std::fprintf(stderr, "kubelet-sim: cleanup: %s\n", left.c_str());
      rc = 1;
    }
  }
  std::filesystem::remove_all(dir);
  return rc;
}
