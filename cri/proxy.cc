#include "cri/proxy.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/client_context.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <mutex>
#include <optional>
#include <string_view>

#include "cri_runtime_v1.pb.h"

namespace warmpool::cri {
namespace {

// Headers that belong to a transport hop, not to the call: gRPC writes its own
// on each side, and copying them would duplicate or contradict them.
bool IsHopHeader(std::string_view key) {
  return key.empty() || key[0] == ':' || key.rfind("grpc-", 0) == 0 || key == "user-agent" ||
         key == "content-type" || key == "te" || key == "host";
}

std::string_view View(grpc::string_ref ref) { return {ref.data(), ref.size()}; }

void CopyRequestMetadata(const grpc::CallbackServerContext& from, grpc::ClientContext* to) {
  for (const auto& [key, value] : from.client_metadata()) {
    if (!IsHopHeader(View(key))) to->AddMetadata(std::string(View(key)), std::string(View(value)));
  }
}

// Upstream's initial and trailing metadata onto the kubelet call; must run
// before the first write (initial) and before Finish (trailing).
void CopyResponseMetadata(const grpc::ClientContext& from, grpc::CallbackServerContext* to) {
  for (const auto& [key, value] : from.GetServerInitialMetadata()) {
    if (!IsHopHeader(View(key))) {
      to->AddInitialMetadata(std::string(View(key)), std::string(View(value)));
    }
  }
  for (const auto& [key, value] : from.GetServerTrailingMetadata()) {
    if (!IsHopHeader(View(key))) {
      to->AddTrailingMetadata(std::string(View(key)), std::string(View(value)));
    }
  }
}

void LogCall(const std::string& method, const grpc::Status& status,
             std::chrono::steady_clock::duration elapsed) {
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("rpc {} {} {}us", method, StatusCodeName(status.error_code()),
                  std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count());
  }
}

// One proxied call: the server half faces kubelet, `upstream_` faces containerd.
//
// Flow (each arrow is one outstanding operation at a time, which gives
// back-pressure in both directions):
//   kubelet --read--> [from_kubelet_] --write--> containerd
//   kubelet <--write-- [from_upstream_] <--read-- containerd
//
// Lifetime: gRPC calls OnDone on the server half last (it needs Finish, which
// is called only from the upstream's OnDone); the object deletes itself there.
// Two holds keep the upstream call (and so its OnDone) open: one until the
// kubelet side can issue no more writes to it (its read stream ended, or the
// upstream stopped answering), one while a response is being written to
// kubelet. So Finish always comes after the last response reached kubelet.
class ProxyCall final : public grpc::ServerGenericBidiReactor {
 public:
  ProxyCall(grpc::GenericCallbackServerContext* ctx, grpc::GenericStub* stub, RpcMetrics* metrics,
            std::unique_ptr<CallRewriter> rewriter)
      : ctx_(ctx),
        metrics_(metrics),
        rewriter_(std::move(rewriter)),
        start_(std::chrono::steady_clock::now()),
        upstream_(this),
        client_ctx_(grpc::ClientContext::FromCallbackServerContext(*ctx)) {
    CopyRequestMetadata(*ctx_, client_ctx_.get());
    stub->PrepareBidiStreamingCall(client_ctx_.get(), ctx_->method(), grpc::StubOptions(),
                                   &upstream_);
    upstream_.AddHold();
    upstream_.StartRead(&from_upstream_);
    upstream_.StartCall();
    StartRead(&from_kubelet_);
  }

  // --- server half (kubelet) ---------------------------------------------
  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (upstream_hold_released_) return;
    if (ok && rewriter_) {
      if (grpc::Status s = rewriter_->OnRequest(&from_kubelet_); !s.ok()) {
        AbortLocked(std::move(s));
        return;
      }
    }
    if (ok) {
      upstream_.StartWrite(&from_kubelet_);
    } else {
      upstream_.StartWritesDone();
      ReleaseUpstreamHoldLocked();
    }
  }

  void OnWriteDone(bool ok) override {
    if (ok) {
      upstream_.StartRead(&from_upstream_);
    } else {
      client_ctx_->TryCancel();  // kubelet went away; stop the upstream call
    }
    upstream_.RemoveHold();  // taken in UpstreamReadDone for this write
  }

  void OnCancel() override { client_ctx_->TryCancel(); }

  void OnDone() override { delete this; }

  // --- upstream half (containerd) ----------------------------------------
  void UpstreamInitialMetadataDone(bool ok) {
    std::lock_guard<std::mutex> lock(mu_);
    if (ok) {
      for (const auto& [key, value] : client_ctx_->GetServerInitialMetadata()) {
        if (!IsHopHeader(View(key))) {
          ctx_->AddInitialMetadata(std::string(View(key)), std::string(View(value)));
        }
      }
      StartSendInitialMetadata();
    }
    initial_metadata_done_ = true;
    if (response_waiting_) {
      response_waiting_ = false;
      StartWrite(&from_upstream_);
    }
  }

  void UpstreamReadDone(bool ok) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ok) {
      // No more responses: whatever kubelet still sends has nowhere to go.
      ReleaseUpstreamHoldLocked();
      return;
    }
    if (rewriter_) {
      bool drop = false;
      if (grpc::Status s = rewriter_->OnResponse(&from_upstream_, &drop); !s.ok()) {
        AbortLocked(std::move(s));
        return;
      }
      if (drop) {
        upstream_.StartRead(&from_upstream_);  // kubelet never sees this one
        return;
      }
    }
    // The upstream call must outlive this write: its OnDone (and so Finish)
    // may only come once kubelet has the message and the next read is armed.
    upstream_.AddHold();
    if (!initial_metadata_done_) {
      response_waiting_ = true;  // written once the headers are forwarded
      return;
    }
    StartWrite(&from_upstream_);
  }

  void UpstreamWriteDone(bool ok) {
    std::lock_guard<std::mutex> lock(mu_);
    if (upstream_hold_released_) return;
    if (ok) {
      StartRead(&from_kubelet_);
    } else {
      ReleaseUpstreamHoldLocked();  // the upstream stream is closed; its status follows
    }
  }

  void UpstreamDone(const grpc::Status& upstream_status) {
    for (const auto& [key, value] : client_ctx_->GetServerTrailingMetadata()) {
      if (!IsHopHeader(View(key))) {
        ctx_->AddTrailingMetadata(std::string(View(key)), std::string(View(value)));
      }
    }
    grpc::Status status = upstream_status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (abort_status_) status = *abort_status_;
    }
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    metrics_->Record(ctx_->method(), status.error_code(), elapsed);
    LogCall(ctx_->method(), status, elapsed);
    Finish(status);
  }

 private:
  class Upstream final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    explicit Upstream(ProxyCall* call) : call_(call) {}
    void OnReadInitialMetadataDone(bool ok) override { call_->UpstreamInitialMetadataDone(ok); }
    void OnReadDone(bool ok) override { call_->UpstreamReadDone(ok); }
    void OnWriteDone(bool ok) override { call_->UpstreamWriteDone(ok); }
    void OnDone(const grpc::Status& status) override { call_->UpstreamDone(status); }

   private:
    ProxyCall* call_;
  };

  // The rewriter refused a message: end the upstream call; kubelet gets
  // `status` once the upstream call is done (Finish comes from there).
  void AbortLocked(grpc::Status status) {
    if (!abort_status_) abort_status_ = std::move(status);
    client_ctx_->TryCancel();
    ReleaseUpstreamHoldLocked();
  }

  void ReleaseUpstreamHoldLocked() {
    if (upstream_hold_released_) return;
    upstream_hold_released_ = true;
    upstream_.RemoveHold();
  }

  grpc::GenericCallbackServerContext* ctx_;
  RpcMetrics* metrics_;
  const std::unique_ptr<CallRewriter> rewriter_;  // null: bytes untouched
  const std::chrono::steady_clock::time_point start_;
  Upstream upstream_;
  std::unique_ptr<grpc::ClientContext> client_ctx_;
  grpc::ByteBuffer from_kubelet_;
  grpc::ByteBuffer from_upstream_;

  std::mutex mu_;
  bool initial_metadata_done_ = false;        // guarded by mu_
  bool response_waiting_ = false;             // guarded by mu_
  bool upstream_hold_released_ = false;       // guarded by mu_
  std::optional<grpc::Status> abort_status_;  // guarded by mu_
};

// A call to a method the CRI declares unary (most of them): one request, one
// answer. The same contract as ProxyCall, with fewer steps: the request is
// read, forwarded as one upstream unary call, and answered with write and
// status together. Each step is a wake-up of a gRPC thread, and on a loaded
// 2-core node those wake-ups are most of what a proxy adds.
class UnaryProxyCall final : public grpc::ServerGenericBidiReactor {
 public:
  UnaryProxyCall(grpc::GenericCallbackServerContext* ctx, grpc::GenericStub* stub,
                 RpcMetrics* metrics, std::unique_ptr<CallRewriter> rewriter)
      : ctx_(ctx),
        stub_(stub),
        metrics_(metrics),
        rewriter_(std::move(rewriter)),
        start_(std::chrono::steady_clock::now()),
        client_ctx_(grpc::ClientContext::FromCallbackServerContext(*ctx)) {
    CopyRequestMetadata(*ctx_, client_ctx_.get());
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client closed without a request (or went away): nothing to forward.
      return Done(grpc::Status(grpc::StatusCode::INTERNAL, "no request message received"));
    }
    if (!rewriter_) return Forward();
    if (grpc::Status s = rewriter_->OnRequest(&request_); !s.ok()) return Done(s);
    rewriter_->Decide(request_, [this](std::optional<CallRewriter::LocalAnswer> answer) {
      if (!answer) return Forward();
      if (answer->status.ok()) {
        response_ = std::move(answer->response);
        if (!response_.Valid()) {
          // An empty message is zero bytes, but a default ByteBuffer is no
          // message at all: gRPC refuses to write it.
          grpc::Slice nothing(size_t{0});
          response_ = grpc::ByteBuffer(&nothing, 1);
        }
        Record(answer->status);
        return StartWriteAndFinish(&response_, grpc::WriteOptions(), answer->status);
      }
      Done(answer->status);
    });
  }

  void Forward() {
    stub_->UnaryCall(client_ctx_.get(), ctx_->method(), grpc::StubOptions(), &request_, &response_,
                     [this](grpc::Status status) { UpstreamDone(status); });
  }

  void OnCancel() override { client_ctx_->TryCancel(); }
  void OnDone() override { delete this; }

 private:
  void UpstreamDone(const grpc::Status& status) {
    CopyResponseMetadata(*client_ctx_, ctx_);
    if (status.ok() && rewriter_) {
      bool drop = false;  // a unary call has exactly one answer: never dropped
      if (grpc::Status s = rewriter_->OnResponse(&response_, &drop); !s.ok()) return Done(s);
    }
    if (status.ok()) {
      Record(status);
      StartWriteAndFinish(&response_, grpc::WriteOptions(), status);
    } else {
      Done(status);
    }
  }

  void Done(const grpc::Status& status) {
    Record(status);
    Finish(status);
  }

  void Record(const grpc::Status& status) {
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    metrics_->Record(ctx_->method(), status.error_code(), elapsed);
    LogCall(ctx_->method(), status, elapsed);
  }

  grpc::GenericCallbackServerContext* ctx_;
  grpc::GenericStub* stub_;
  RpcMetrics* metrics_;
  const std::unique_ptr<CallRewriter> rewriter_;  // null: bytes untouched
  const std::chrono::steady_clock::time_point start_;
  std::unique_ptr<grpc::ClientContext> client_ctx_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
};

}  // namespace

PassthroughService::PassthroughService(std::shared_ptr<grpc::Channel> upstream, RpcMetrics* metrics,
                                       RewritePolicy* policy)
    : channel_(std::move(upstream)), stub_(channel_), metrics_(metrics), policy_(policy) {
  // Through a generated type, not the pool by name: that also makes the
  // linker keep the descriptors when this library is linked statically.
  const google::protobuf::FileDescriptor* file =
      ::runtime::v1::VersionRequest::descriptor()->file();
  for (int s = 0; s < file->service_count(); ++s) {
    const google::protobuf::ServiceDescriptor* service = file->service(s);
    for (int i = 0; i < service->method_count(); ++i) {
      const auto* m = service->method(i);
      if (!m->client_streaming() && !m->server_streaming()) {
        unary_methods_.insert("/" + service->full_name() + "/" + m->name());
      }
    }
  }
}

grpc::ServerGenericBidiReactor* PassthroughService::CreateReactor(
    grpc::GenericCallbackServerContext* ctx) {
  std::unique_ptr<CallRewriter> rewriter = policy_ ? policy_->ForMethod(ctx->method()) : nullptr;
  if (unary_methods_.count(ctx->method()) != 0) {
    return new UnaryProxyCall(ctx, &stub_, metrics_, std::move(rewriter));
  }
  return new ProxyCall(ctx, &stub_, metrics_, std::move(rewriter));
}

}  // namespace warmpool::cri
