#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace warmpool {

// What warmpoold tells its service manager (sd_notify). Without
// NOTIFY_SOCKET in the environment every call is a no-op, so the same binary
// runs under systemd, in a container and by hand.
class ServiceNotifier {
 public:
  virtual ~ServiceNotifier() = default;
  virtual void Ready() = 0;
  virtual void Stopping() = 0;
  virtual void Reloading() = 0;
  virtual void Watchdog() = 0;
  virtual void Status(const std::string& text) = 0;
  // The watchdog interval systemd expects pings within (WatchdogSec), if any.
  virtual std::optional<std::chrono::microseconds> WatchdogInterval() const = 0;
};

// sd_notify(3) through libsystemd.
class SystemdNotifier final : public ServiceNotifier {
 public:
  SystemdNotifier();
  void Ready() override;
  void Stopping() override;
  void Reloading() override;
  void Watchdog() override;
  void Status(const std::string& text) override;
  std::optional<std::chrono::microseconds> WatchdogInterval() const override;

 private:
  std::optional<std::chrono::microseconds> watchdog_;
};

}  // namespace warmpool
