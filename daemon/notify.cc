#include "daemon/notify.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

namespace warmpool {
namespace {

void Send(const std::string& state) {
  // unset_environment=0: children (none today) may notify too.
  int r = sd_notify(0, state.c_str());
  if (r < 0) spdlog::warn("sd_notify({}) failed: {}", state, r);
}

}  // namespace

SystemdNotifier::SystemdNotifier() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ = std::chrono::microseconds(usec);
  }
}

void SystemdNotifier::Ready() { Send("READY=1"); }
void SystemdNotifier::Stopping() { Send("STOPPING=1"); }
void SystemdNotifier::Reloading() { Send("RELOADING=1"); }
void SystemdNotifier::Watchdog() { Send("WATCHDOG=1"); }
void SystemdNotifier::Status(const std::string& text) { Send("STATUS=" + text); }

std::optional<std::chrono::microseconds> SystemdNotifier::WatchdogInterval() const {
  return watchdog_;
}

}  // namespace warmpool
