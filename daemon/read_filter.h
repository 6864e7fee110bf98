#pragma once

// What kubelet sees of pools: nothing. Pool entries' sandboxes, containers,
// stats, metrics and events are removed from every read answer (lists,
// streams, events); a call naming a pool object by id gets the NOT_FOUND
// containerd gives for an id it does not know; images pools need are
// reported pinned, so kubelet's image GC leaves them alone.
//
// Objects are recognised by the warmpool labels they carry (so one caught
// between its creation and its registration is hidden too) and by id (for
// calls that carry only an id). Every other method passes untouched.

#include <atomic>
#include <map>
#include <string>

#include "cri/rewrite.h"
#include "daemon/pool_objects.h"

namespace warmpool {

class PoolReadFilter final : public cri::RewritePolicy {
 public:
  // `first` (optional; the hand-off) is asked first for every method.
  explicit PoolReadFilter(const PoolObjects* objects, cri::RewritePolicy* first = nullptr);
  std::unique_ptr<cri::CallRewriter> ForMethod(const std::string& method) override;

  // Until called, every call is answered UNAVAILABLE (kubelet retries): the
  // hand-off records are not recovered yet, so an adopted pod would show
  // warmpool's identity, or a hand-off could race its own recovery.
  void SetReady() { ready_ = true; }

 private:
  std::atomic<bool> ready_{false};
  using Factory = std::unique_ptr<cri::CallRewriter> (*)(const PoolObjects*);
  const PoolObjects* objects_;
  cri::RewritePolicy* first_;
  std::map<std::string, Factory> factories_;
};

// The NOT_FOUND containerd 1.6 answers for an unknown sandbox / container id.
grpc::Status SandboxNotFound(const std::string& id);
grpc::Status ContainerNotFound(const std::string& id);
// StopPodSandbox's NOT_FOUND (the id quoted).
grpc::Status SandboxNotFoundQuoted(const std::string& id);

}  // namespace warmpool
