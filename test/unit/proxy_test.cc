// The pass-through pump against an in-process upstream whose behaviour each
// test controls (echo, status, streams, slow calls). The real-containerd
// comparison lives in test/integration; this checks the proxy's contract in
// isolation: bytes, metadata, status, deadlines, cancellation, concurrency,
// size, reconnect, and the socket's life cycle.

#include "cri/proxy.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "cri/metrics.h"
#include "cri/server.h"
#include "cri/upstream.h"
#include "cri_runtime_v1.pb.h"

namespace warmpool::cri {
namespace {

using namespace std::chrono_literals;

grpc::ByteBuffer ToBuffer(const std::string& s) {
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromBuffer(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  (void)b.Dump(&slices);
  std::string out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

std::string MetadataValue(const std::multimap<grpc::string_ref, grpc::string_ref>& md,
                          const std::string& key) {
  auto it = md.find(key);
  return it == md.end() ? "" : std::string(it->second.data(), it->second.size());
}

// What the fake upstream observed, for assertions.
struct Observed {
  std::mutex mu;
  std::condition_variable cv;
  int cancelled = 0;
  int slow_started = 0;
  std::chrono::system_clock::time_point last_deadline;
};

// The upstream: a generic service, so the tests can use methods no proto knows.
//   /test.T/Echo    echoes every message, request metadata x-* comes back as
//                   initial metadata echo-x-* and trailing metadata trail-x-*
//   /test.T/Status  fails with the code, message and details the request asks
//   /test.T/Stream  sends `count` (request body, decimal) messages "0".."count-1"
//   /test.T/Slow    never answers; records its deadline and its cancellation
enum class Kind { kEcho, kStatus, kStream, kSlow, kUnknown };

// CRI methods map onto the same behaviours, so the unary fast path (methods
// the CRI declares unary) is tested exactly like the streaming pump.
Kind KindOf(const std::string& m) {
  if (m == "/test.T/Echo" || m == "/runtime.v1.RuntimeService/Version") return Kind::kEcho;
  if (m == "/test.T/Status" || m == "/runtime.v1.RuntimeService/PodSandboxStatus") {
    return Kind::kStatus;
  }
  if (m == "/test.T/Stream" || m == "/test.T/StreamEven") return Kind::kStream;
  if (m == "/runtime.v1.RuntimeService/Status") return Kind::kEcho;
  if (m == "/test.T/Slow" || m == "/runtime.v1.ImageService/PullImage") return Kind::kSlow;
  return Kind::kUnknown;
}

class FakeUpstream final : public grpc::CallbackGenericService {
 public:
  explicit FakeUpstream(Observed* observed) : observed_(observed) {}

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    class Reactor : public grpc::ServerGenericBidiReactor {
     public:
      Reactor(grpc::GenericCallbackServerContext* ctx, Observed* observed)
          : ctx_(ctx), observed_(observed) {
        for (const auto& [k, v] : ctx->client_metadata()) {
          std::string key(k.data(), k.size());
          if (key.rfind("x-", 0) == 0) {
            ctx->AddInitialMetadata("echo-" + key, std::string(v.data(), v.size()));
            ctx->AddTrailingMetadata("trail-" + key, std::string(v.data(), v.size()));
          }
        }
        if (KindOf(ctx->method()) == Kind::kSlow) {
          std::lock_guard<std::mutex> lock(observed_->mu);
          observed_->slow_started++;
          observed_->last_deadline = ctx->deadline();
          observed_->cv.notify_all();
        }
        StartRead(&in_);
      }
      void OnReadDone(bool ok) override {
        const std::string& m = ctx_->method();
        const Kind kind = KindOf(m);
        if (kind == Kind::kEcho) {
          if (!ok) return Finish(grpc::Status::OK);
          out_ = in_;
          return StartWrite(&out_);
        }
        if (!ok) return;  // the others act on their single request
        if (kind == Kind::kStatus) {
          std::string body = FromBuffer(in_);
          return Finish(
              grpc::Status(grpc::StatusCode::NOT_FOUND, "no sandbox " + body, "details-" + body));
        }
        if (kind == Kind::kStream) {
          remaining_ = std::stoi(FromBuffer(in_));
          return WriteNext();
        }
        if (kind == Kind::kSlow) return;  // wait for cancellation
        Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "unknown " + m));
      }
      void OnWriteDone(bool ok) override {
        if (!ok) return Finish(grpc::Status::CANCELLED);
        if (KindOf(ctx_->method()) == Kind::kEcho) return StartRead(&in_);
        WriteNext();
      }
      void OnCancel() override {
        {
          std::lock_guard<std::mutex> lock(observed_->mu);
          observed_->cancelled++;
          observed_->cv.notify_all();
        }
        if (KindOf(ctx_->method()) == Kind::kSlow) Finish(grpc::Status::CANCELLED);
      }
      void OnDone() override { delete this; }

     private:
      void WriteNext() {
        if (next_ == remaining_) return Finish(grpc::Status::OK);
        out_ = ToBuffer(std::to_string(next_++));
        StartWrite(&out_);
      }
      grpc::GenericCallbackServerContext* ctx_;
      Observed* observed_;
      grpc::ByteBuffer in_, out_;
      int remaining_ = 0, next_ = 0;
    };
    return new Reactor(ctx, observed_);
  }

 private:
  Observed* observed_;
};

// A policy exercising every rewriting hook:
//   RuntimeService/Status         answered locally ("local:" + request) from
//                                 another thread, unless the request is
//                                 "forward" (then it reaches the upstream echo)
//   RuntimeService/RuntimeConfig  refused by OnRequest (PERMISSION_DENIED)
//   /test.T/StreamEven            odd messages dropped, even ones get a "!"
class TestPolicy final : public RewritePolicy {
 public:
  std::unique_ptr<CallRewriter> ForMethod(const std::string& method) override {
    if (method == "/runtime.v1.RuntimeService/Status") return std::make_unique<Local>();
    if (method == "/runtime.v1.RuntimeService/RuntimeConfig") return std::make_unique<Refuse>();
    if (method == "/test.T/StreamEven") return std::make_unique<EvenOnly>();
    return nullptr;
  }

 private:
  class Local final : public CallRewriter {
   public:
    void Decide(const grpc::ByteBuffer& request, DecideCallback done) override {
      std::string body = FromBuffer(request);
      if (body == "forward") return done(std::nullopt);
      std::thread([body, done] {
        done(LocalAnswer{grpc::Status::OK, ToBuffer("local:" + body)});
      }).detach();
    }
  };
  class Refuse final : public CallRewriter {
   public:
    grpc::Status OnRequest(grpc::ByteBuffer*) override {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "refused by policy");
    }
  };
  class EvenOnly final : public CallRewriter {
   public:
    grpc::Status OnResponse(grpc::ByteBuffer* message, bool* drop) override {
      std::string body = FromBuffer(*message);
      *drop = std::stoi(body) % 2 == 1;
      *message = ToBuffer(body + "!");
      return grpc::Status::OK;
    }
  };
};

// Which proxy path a test exercises: methods no proto declares go through the
// streaming pump, methods the CRI declares unary through the unary path.
struct Methods {
  std::string label, echo, status, slow;
};

class ProxyTest : public ::testing::TestWithParam<Methods> {
 protected:
  const std::string& Echo() const { return GetParam().echo; }
  const std::string& StatusMethod() const { return GetParam().status; }
  const std::string& Slow() const { return GetParam().slow; }

  void SetUp() override {
    char tmpl[] = "/tmp/wp-proxy-XXXXXX";
    dir_ = mkdtemp(tmpl);
    upstream_path_ = dir_ + "/upstream.sock";
    proxy_path_ = dir_ + "/run/warmpool.sock";  // parent created by the server
    StartUpstream();
    proxy_service_ =
        std::make_unique<PassthroughService>(DialUpstream(upstream_path_), &metrics_, &policy_);
    auto server = CriServer::Start(proxy_path_, proxy_service_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    proxy_ = std::move(*server);
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);  // as kubelet's 16 MiB, but for 20 MiB
    stub_ = std::make_unique<grpc::GenericStub>(
        grpc::CreateCustomChannel("unix:" + proxy_path_, grpc::InsecureChannelCredentials(), args));
  }

  void TearDown() override {
    if (proxy_) proxy_->Shutdown(1s);
    if (upstream_) upstream_->Shutdown(std::chrono::system_clock::now());
    std::filesystem::remove_all(dir_);
  }

  void StartUpstream() {
    grpc::ServerBuilder builder;
    builder.SetMaxReceiveMessageSize(-1);
    // A generic service can serve only one server: a fresh one per start.
    fakes_.push_back(std::make_unique<FakeUpstream>(&observed_));
    builder.RegisterCallbackGenericService(fakes_.back().get());
    builder.AddListeningPort("unix:" + upstream_path_, grpc::InsecureServerCredentials());
    upstream_ = builder.BuildAndStart();
    ASSERT_TRUE(upstream_);
  }

  // A blocking unary call through the proxy.
  grpc::Status Unary(const std::string& method, const std::string& body, std::string* reply,
                     grpc::ClientContext* ctx) {
    grpc::ByteBuffer req = ToBuffer(body), resp;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    grpc::Status result;
    stub_->UnaryCall(ctx, method, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) {
      std::lock_guard<std::mutex> lock(mu);
      result = std::move(s);
      done = true;
      cv.notify_all();
    });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
    if (reply) *reply = FromBuffer(resp);
    return result;
  }

  template <typename Pred>
  bool WaitFor(Pred pred, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock<std::mutex> lock(observed_.mu);
    return observed_.cv.wait_for(lock, timeout, pred);
  }

  std::string dir_, upstream_path_, proxy_path_;
  Observed observed_;
  std::vector<std::unique_ptr<FakeUpstream>> fakes_;
  TestPolicy policy_;
  std::unique_ptr<grpc::Server> upstream_;
  RpcMetrics metrics_;
  std::unique_ptr<PassthroughService> proxy_service_;
  std::unique_ptr<CriServer> proxy_;
  std::unique_ptr<grpc::GenericStub> stub_;
};

TEST_P(ProxyTest, BytesAndMetadataPassUnchanged) {
  std::string body("\x00\x01\xff binary \x80", 13);
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-request-id", "abc-123");
  ctx.AddMetadata("x-blob-bin", std::string("\x00\xfe", 2));
  std::string reply;
  grpc::Status s = Unary(Echo(), body, &reply, &ctx);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reply, body);
  EXPECT_EQ(MetadataValue(ctx.GetServerInitialMetadata(), "echo-x-request-id"), "abc-123");
  EXPECT_EQ(MetadataValue(ctx.GetServerInitialMetadata(), "echo-x-blob-bin"),
            std::string("\x00\xfe", 2));
  EXPECT_EQ(MetadataValue(ctx.GetServerTrailingMetadata(), "trail-x-request-id"), "abc-123");
}

TEST_P(ProxyTest, ErrorCodeMessageAndDetailsPassUnchanged) {
  grpc::ClientContext ctx;
  grpc::Status s = Unary(StatusMethod(), "sb-42", nullptr, &ctx);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "no sandbox sb-42");
  EXPECT_EQ(s.error_details(), "details-sb-42");
}

TEST_P(ProxyTest, MethodNobodyDeclaredIsForwarded) {
  // The upstream decides what an unknown method means, not the proxy.
  grpc::ClientContext ctx;
  grpc::Status s = Unary("/runtime.v1.RuntimeService/SomeMethodFrom2030", "x", nullptr, &ctx);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(s.error_message(), "unknown /runtime.v1.RuntimeService/SomeMethodFrom2030");
}

TEST_P(ProxyTest, LargeMessagesPass) {
  // kubelet allows 16 MiB answers (a ListContainers on a full node); go past it.
  std::string body(20 << 20, 'x');
  for (size_t i = 0; i < body.size(); i += 4096) body[i] = static_cast<char>(i / 4096);
  grpc::ClientContext ctx;
  std::string reply;
  grpc::Status s = Unary(Echo(), body, &reply, &ctx);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reply.size(), body.size());
  EXPECT_TRUE(reply == body);
}

TEST_P(ProxyTest, ServerStreamArrivesInOrderAndComplete) {
  grpc::ClientContext ctx;
  grpc::CompletionQueue cq;
  auto call = stub_->PrepareCall(&ctx, "/test.T/Stream", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::ByteBuffer req = ToBuffer("500");
  call->Write(req, reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  call->WritesDone(reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  for (int i = 0; i < 500; ++i) {
    grpc::ByteBuffer msg;
    call->Read(&msg, reinterpret_cast<void*>(4));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok) << "message " << i;
    ASSERT_EQ(FromBuffer(msg), std::to_string(i));
  }
  grpc::ByteBuffer extra;
  call->Read(&extra, reinterpret_cast<void*>(5));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_FALSE(ok);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(6));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  EXPECT_TRUE(status.ok()) << status.error_message();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_P(ProxyTest, DeadlineReachesUpstreamAndExpires) {
  grpc::ClientContext ctx;
  const auto deadline = std::chrono::system_clock::now() + 3s;
  ctx.set_deadline(deadline);
  grpc::Status s = Unary(Slow(), "", nullptr, &ctx);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(WaitFor([&] { return observed_.slow_started == 1; }));
  // The upstream saw kubelet's deadline (not infinity, not later than asked).
  std::lock_guard<std::mutex> lock(observed_.mu);
  EXPECT_LE(observed_.last_deadline, deadline + 5ms);
  EXPECT_GT(observed_.last_deadline, deadline - 1s);
}

TEST_P(ProxyTest, CancellationReachesUpstream) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  std::thread caller([&] { (void)Unary(Slow(), "", nullptr, ctx.get()); });
  ASSERT_TRUE(WaitFor([&] { return observed_.slow_started == 1; }));
  ctx->TryCancel();
  EXPECT_TRUE(WaitFor([&] { return observed_.cancelled >= 1; }));
  caller.join();
}

TEST_P(ProxyTest, SlowCallsDoNotBlockOthers) {
  // More slow calls than the machine has cores (and than a small thread pool).
  constexpr int kSlow = 32;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::thread> callers;
  for (int i = 0; i < kSlow; ++i) contexts.push_back(std::make_unique<grpc::ClientContext>());
  for (int i = 0; i < kSlow; ++i) {
    callers.emplace_back([&, i] { (void)Unary(Slow(), "", nullptr, contexts[i].get()); });
  }
  ASSERT_TRUE(WaitFor([&] { return observed_.slow_started == kSlow; }));
  for (int i = 0; i < 50; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    std::string reply;
    ASSERT_TRUE(Unary(Echo(), "fast", &reply, &ctx).ok());
    EXPECT_EQ(reply, "fast");
  }
  for (auto& c : contexts) c->TryCancel();
  for (auto& t : callers) t.join();
}

TEST_P(ProxyTest, ManyConcurrentCallsAllAnswered) {
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        grpc::ClientContext ctx;
        std::string body = std::to_string(t * 1000 + i), reply;
        if (Unary(Echo(), body, &reply, &ctx).ok() && reply == body) good++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 800);
  auto snapshot = metrics_.Snapshot();
  EXPECT_EQ(snapshot[Echo()].calls_by_code[grpc::StatusCode::OK], 800u);
}

TEST_P(ProxyTest, UpstreamDownIsUnavailableThenReconnects) {
  upstream_->Shutdown(std::chrono::system_clock::now());
  upstream_.reset();
  grpc::ClientContext ctx;
  grpc::Status s = Unary(Echo(), "x", nullptr, &ctx);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();

  std::filesystem::remove(upstream_path_);
  StartUpstream();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  grpc::Status last;
  while (std::chrono::steady_clock::now() < deadline) {
    grpc::ClientContext retry;
    std::string reply;
    last = Unary(Echo(), "back", &reply, &retry);
    if (last.ok()) {
      EXPECT_EQ(reply, "back");
      return;
    }
    std::this_thread::sleep_for(20ms);
  }
  FAIL() << "no reconnect within 10s: " << last.error_message();
}

TEST_P(ProxyTest, SocketIsPrivateAndRemovedOnShutdown) {
  struct stat st {};
  ASSERT_EQ(stat(proxy_path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  proxy_->Shutdown(1s);
  EXPECT_FALSE(std::filesystem::exists(proxy_path_));
}

TEST_P(ProxyTest, SecondServerOnLiveSocketIsRefused) {
  PassthroughService other(DialUpstream(upstream_path_), &metrics_);
  auto second = CriServer::Start(proxy_path_, &other);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(second.status().message().find(proxy_path_), std::string::npos);
}

TEST_P(ProxyTest, StaleSocketFileIsReplaced) {
  proxy_->Shutdown(1s);
  proxy_.reset();
  // A socket file left by a killed daemon: bound, never listened on.
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, proxy_path_.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  // A generic service serves one server in its life: a new one for the restart.
  proxy_service_ = std::make_unique<PassthroughService>(DialUpstream(upstream_path_), &metrics_);
  auto server = CriServer::Start(proxy_path_, proxy_service_.get());
  ASSERT_TRUE(server.ok()) << server.status();
  proxy_ = std::move(*server);
  grpc::ClientContext ctx;
  std::string reply;
  EXPECT_TRUE(Unary(Echo(), "again", &reply, &ctx).ok());
}

TEST_P(ProxyTest, PolicyAnswersLocallyOrForwards) {
  grpc::ClientContext local_ctx;
  std::string reply;
  ASSERT_TRUE(Unary("/runtime.v1.RuntimeService/Status", "abc", &reply, &local_ctx).ok());
  EXPECT_EQ(reply, "local:abc");
  grpc::ClientContext fwd_ctx;
  ASSERT_TRUE(Unary("/runtime.v1.RuntimeService/Status", "forward", &reply, &fwd_ctx).ok());
  EXPECT_EQ(reply, "forward");  // the upstream's echo
}

TEST_P(ProxyTest, PolicyRefusalNeverReachesUpstream) {
  grpc::ClientContext ctx;
  grpc::Status s = Unary("/runtime.v1.RuntimeService/RuntimeConfig", "x", nullptr, &ctx);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(), "refused by policy");
}

TEST_P(ProxyTest, PolicyDropsAndEditsStreamMessages) {
  grpc::ClientContext ctx;
  grpc::CompletionQueue cq;
  auto call = stub_->PrepareCall(&ctx, "/test.T/StreamEven", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  call->WriteLast(ToBuffer("10"), grpc::WriteOptions(), reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  std::vector<std::string> got;
  for (;;) {
    grpc::ByteBuffer msg;
    call->Read(&msg, reinterpret_cast<void*>(3));
    if (!cq.Next(&tag, &ok) || !ok) break;
    got.push_back(FromBuffer(msg));
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(got, (std::vector<std::string>{"0!", "2!", "4!", "6!", "8!"}));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

INSTANTIATE_TEST_SUITE_P(
    Paths, ProxyTest,
    ::testing::Values(Methods{"StreamingPump", "/test.T/Echo", "/test.T/Status", "/test.T/Slow"},
                      Methods{"UnaryPath", "/runtime.v1.RuntimeService/Version",
                              "/runtime.v1.RuntimeService/PodSandboxStatus",
                              "/runtime.v1.ImageService/PullImage"}),
    [](const ::testing::TestParamInfo<Methods>& info) { return info.param.label; });

TEST(UnixEndpoint, AcceptsTheSpellingsKubeletUses) {
  EXPECT_EQ(UnixTarget("/run/containerd/containerd.sock"), "unix:/run/containerd/containerd.sock");
  EXPECT_EQ(UnixTarget("unix:///run/c.sock"), "unix:/run/c.sock");
  EXPECT_EQ(UnixTarget("unix:/run/c.sock"), "unix:/run/c.sock");
  EXPECT_EQ(UnixPath("unix:///run/c.sock"), "/run/c.sock");
}

}  // namespace
}  // namespace warmpool::cri

namespace warmpool::cri {
namespace {

TEST(RewriteWire, SerializeOverAnExistingMessageAndParseBack) {
  runtime::v1::VersionResponse in;
  in.set_runtime_name("containerd");
  grpc::ByteBuffer buffer = ToBuffer("bytes already there");  // as in a rewriter
  ASSERT_TRUE(SerializeMessage(in, &buffer).ok());
  runtime::v1::VersionResponse out;
  ASSERT_TRUE(ParseMessage(buffer, &out).ok());
  EXPECT_EQ(out.runtime_name(), "containerd");
  // Parsing does not consume the caller's buffer.
  runtime::v1::VersionResponse again;
  ASSERT_TRUE(ParseMessage(buffer, &again).ok());
  EXPECT_EQ(again.runtime_name(), "containerd");
}

}  // namespace
}  // namespace warmpool::cri
