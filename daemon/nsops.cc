// Namespace operations: see nsops.h for the contract.
//
// Everything that runs between the clone and _exit in a helper child is in
// the "child side" functions below and uses only raw system calls (glibc's
// thin wrappers: open, write, setns, mkdir, ..., or syscall()). They read
// only memory prepared before the clone and never allocate.
#include "daemon/nsops.h"

#include <fcntl.h>
#include <linux/openat2.h>  // struct open_how, RESOLVE_* (no glibc wrapper for openat2)
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>  // glibc 2.36: new mount API constants and struct mount_attr
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

// The new mount API, in case the headers predate it (numbers are the same on
// every architecture that has them: the syscall table was unified in 5.1).
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOUNT_ATTR_SIZE_VER0
struct mount_attr {
  uint64_t attr_set;
  uint64_t attr_clr;
  uint64_t propagation;
  uint64_t userns_fd;
};
#endif

namespace warmpool {
namespace {

constexpr size_t kHostNameMax = 64;  // HOST_NAME_MAX, the kernel's limit for sethostname

struct NsKind {
  int flag;
  const char* file;       // /proc/PID/ns/<file>
  const char* setns_msg;  // the child's step name (static: read by the parent)
};
// Join order: mount namespace last (joining it changes root and cwd).
constexpr NsKind kNsKinds[] = {
    {CLONE_NEWIPC, "ipc", "setns into ipc namespace"},
    {CLONE_NEWUTS, "uts", "setns into uts namespace"},
    {CLONE_NEWNET, "net", "setns into net namespace"},
    {CLONE_NEWCGROUP, "cgroup", "setns into cgroup namespace"},
    {CLONE_NEWNS, "mnt", "setns into mount namespace"},
};
constexpr int kSupportedNs =
    CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_NEWNS;

// What the child writes to the pipe before its output bytes.
struct ChildHeader {
  int err;
  const char* what;
  size_t size;
};

// A file descriptor closed when it goes out of scope (parent side only).
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

absl::Status ErrnoStatus(int err, const std::string& msg) { return absl::ErrnoToStatus(err, msg); }

// Opening something under /proc/PID failed: a vanished process is kNotFound
// with a plain message, anything else says which file.
absl::Status ProcOpenError(pid_t pid, const std::string& file, int err) {
  if (err == ENOENT || err == ESRCH) {
    struct stat st;
    if (::stat(absl::StrCat("/proc/", pid).c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("process ", pid, " does not exist"));
    }
  }
  return ErrnoStatus(err, absl::StrCat("open ", file));
}

// ---------------------------------------------------------------------------
// Child side: async-signal-safe only.

bool ChildWriteAll(int fd, const void* buf, size_t len) {
  const char* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

// "self/fd/<n>" into buf (at least 32 bytes).
void ChildFormatSelfFd(char* buf, int n) {
  const char prefix[] = "self/fd/";
  size_t i = 0;
  for (; prefix[i] != '\0'; ++i) buf[i] = prefix[i];
  char digits[16];
  int d = 0;
  unsigned v = static_cast<unsigned>(n);
  do {
    digits[d++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (d > 0) buf[i++] = digits[--d];
  buf[i] = '\0';
}

// mkdir -p of every parent of `path` (a writable copy: '/' are replaced by
// '\0' and put back). The last component is left alone.
NsChildResult ChildMkdirParents(char* path) {
  for (char* p = path + 1; *p != '\0'; ++p) {
    if (*p != '/') continue;
    *p = '\0';
    int rc = ::mkdir(path, 0755);
    int err = errno;
    *p = '/';
    if (rc != 0 && err != EEXIST) return {err, "create parent directories of the mount point"};
  }
  return {};
}

// Writes content to an open fd, fsyncs and closes it.
NsChildResult ChildWriteAndSync(int fd, const char* data, size_t size) {
  if (!ChildWriteAll(fd, data, size)) {
    int err = errno;
    ::close(fd);
    return {err, "write"};
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return {err, "fsync"};
  }
  if (::close(fd) != 0) return {errno, "close"};
  return {};
}

// What the child hands back: it shares the caller's memory (CLONE_VM) and
// the caller is suspended until it exits (CLONE_VFORK), so it writes here.
struct ChildShared {
  ChildHeader header{0, nullptr, 0};
  bool reported = false;
  // Inputs.
  const int* ns_fds = nullptr;
  int root_fd = -1;
  absl::FunctionRef<NsChildResult(NsChildOutput&)>* fn = nullptr;
  NsChildOutput* out = nullptr;
  std::chrono::milliseconds timeout{0};
};

int ChildMain(void* arg) {
  ChildShared& sh = *static_cast<ChildShared*>(arg);
  // The hang guard: the caller cannot time the child out while it is
  // suspended, so the child's own timer ends it (SIGALRM, default action).
  // Its signal handlers are a copy (no CLONE_SIGHAND): resetting one here
  // does not touch warmpoold's.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGALRM, &dfl, nullptr);
  struct itimerval timer;
  std::memset(&timer, 0, sizeof timer);
  timer.it_value.tv_sec = static_cast<time_t>(sh.timeout.count() / 1000);
  timer.it_value.tv_usec = static_cast<suseconds_t>((sh.timeout.count() % 1000) * 1000);
  ::setitimer(ITIMER_REAL, &timer, nullptr);
  sigset_t alrm;
  sigemptyset(&alrm);
  sigaddset(&alrm, SIGALRM);
  ::sigprocmask(SIG_UNBLOCK, &alrm, nullptr);

  NsChildResult res;
  for (size_t i = 0; i < std::size(kNsKinds); ++i) {
    if (sh.ns_fds[i] < 0) continue;
    if (::setns(sh.ns_fds[i], kNsKinds[i].flag) != 0) {
      res = {errno, kNsKinds[i].setns_msg};
      break;
    }
  }
  if (res.err == 0 && sh.root_fd >= 0) {
    if (::fchdir(sh.root_fd) != 0) {
      res = {errno, "fchdir to /proc/PID/root"};
    } else if (::chroot(".") != 0) {
      res = {errno, "chroot to the process's root"};
    }
  }
  if (res.err == 0) res = (*sh.fn)(*sh.out);
  // The output goes back on failure too (InjectBindMounts says which mount
  // failed through it).
  sh.header = ChildHeader{res.err, res.what, std::min(sh.out->size, sh.out->capacity)};
  sh.reported = true;
  ::_exit(0);
}

// ---------------------------------------------------------------------------
// Parent side.

std::string NsTypesText(int nstypes) {
  std::vector<std::string> names;
  for (const NsKind& k : kNsKinds) {
    if (nstypes & k.flag) names.push_back(k.file);
  }
  return absl::StrJoin(names, ",");
}

int WaitChild(pid_t child) {
  int st = 0;
  while (::waitpid(child, &st, __WALL) < 0) {
    if (errno != EINTR) return -1;
  }
  return st;
}

std::string WaitStatusText(int st) {
  if (st < 0) return "could not be reaped";
  if (WIFSIGNALED(st)) return absl::StrCat("was killed by signal ", WTERMSIG(st));
  if (WIFEXITED(st)) return absl::StrCat("exited with status ", WEXITSTATUS(st));
  return absl::StrCat("ended with wait status ", st);
}

}  // namespace

absl::Status RunInNamespaces(pid_t pid, int nstypes,
                             absl::FunctionRef<NsChildResult(NsChildOutput&)> fn,
                             std::string* output, size_t output_capacity,
                             std::chrono::milliseconds timeout) {
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("invalid pid ", pid));
  if (nstypes == 0 || (nstypes & ~kSupportedNs) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported namespace mask 0x", absl::Hex(nstypes),
                     " (supported: CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWNET, CLONE_NEWIPC, "
                     "CLONE_NEWCGROUP)"));
  }

  // Everything the child touches is opened or allocated here.
  Fd ns_fd_owner[std::size(kNsKinds)];
  int ns_fds[std::size(kNsKinds)];
  for (size_t i = 0; i < std::size(kNsKinds); ++i) {
    ns_fds[i] = -1;
    if (!(nstypes & kNsKinds[i].flag)) continue;
    std::string file = absl::StrCat("/proc/", pid, "/ns/", kNsKinds[i].file);
    Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.ok()) return ProcOpenError(pid, file, errno);
    ns_fds[i] = fd.get();
    ns_fd_owner[i] = std::move(fd);
  }
  Fd root_fd;
  if (nstypes & CLONE_NEWNS) {
    std::string file = absl::StrCat("/proc/", pid, "/root");
    root_fd = Fd(::open(file.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root_fd.ok()) return ProcOpenError(pid, file, errno);
  }
  std::string out_buf(output != nullptr ? output_capacity : 0, '\0');
  NsChildOutput out{out_buf.data(), out_buf.size(), 0};

  ChildShared shared;
  shared.ns_fds = ns_fds;
  shared.root_fd = root_fd.get();
  shared.fn = &fn;
  shared.out = &out;
  shared.timeout = timeout;
  // The child's own stack (it shares our memory).
  constexpr size_t kStackSize = 256 * 1024;
  void* stack = ::mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return ErrnoStatus(errno, "mmap namespace helper stack");

  // No signal handler of the daemon may run in the child: block all signals
  // across the clone (the child unblocks only its SIGALRM guard).
  // CLONE_VM | CLONE_VFORK, as posix_spawn does: a fork of warmpoold copies
  // its page tables and then takes copy-on-write faults on every page it
  // touches, 5-13 ms per call on a 2-core VM; this costs ~0.1 ms. The
  // calling thread waits until the child exits; other threads run on.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int child = ::clone(ChildMain, static_cast<char*>(stack) + kStackSize,
                      CLONE_VM | CLONE_VFORK | SIGCHLD, &shared);
  int clone_err = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (child < 0) {
    ::munmap(stack, kStackSize);
    return ErrnoStatus(clone_err, "clone namespace helper");
  }
  int st = WaitChild(static_cast<pid_t>(child));
  ::munmap(stack, kStackSize);
  for (Fd& f : ns_fd_owner) f.Reset();
  root_fd.Reset();

  std::string where =
      absl::StrCat("namespace helper for pid ", pid, " (", NsTypesText(nstypes), ")");
  if (!shared.reported) {
    if (st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) {
      return absl::DeadlineExceededError(
          absl::StrCat(where, " did not finish within ", timeout.count(), " ms; killed"));
    }
    return absl::InternalError(absl::StrCat(where, " ", WaitStatusText(st), " without a report"));
  }
  const ChildHeader& h = shared.header;
  if (output != nullptr) output->assign(out.data, h.size);
  if (h.err != 0) {
    return ErrnoStatus(h.err, h.what != nullptr ? h.what : "(unnamed step)");
  }
  return absl::OkStatus();
}

absl::Status SetHostname(pid_t pid, const std::string& hostname) {
  std::string ctx = absl::StrCat("SetHostname(pid ", pid, ", \"", hostname, "\")");
  if (hostname.size() > kHostNameMax) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": hostname is ", hostname.size(),
                                                   " bytes, the kernel allows ", kHostNameMax));
  }
  const char* name = hostname.data();
  size_t len = hostname.size();
  absl::Status s = RunInNamespaces(pid, CLONE_NEWUTS, [name, len](NsChildOutput&) -> NsChildResult {
    if (::sethostname(name, len) != 0) return {errno, "sethostname"};
    return {};
  });
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat(ctx, ": ", s.message()));
  return s;
}

absl::StatusOr<std::string> GetHostname(pid_t pid) {
  std::string name;
  absl::Status s = RunInNamespaces(
      pid, CLONE_NEWUTS,
      [](NsChildOutput& out) -> NsChildResult {
        struct utsname u;
        if (::uname(&u) != 0) return {errno, "uname"};
        size_t n = 0;
        while (n < sizeof u.nodename && u.nodename[n] != '\0' && n < out.capacity) {
          out.data[n] = u.nodename[n];
          ++n;
        }
        out.size = n;
        return {};
      },
      &name, sizeof(utsname::nodename));
  if (!s.ok())
    return absl::Status(s.code(), absl::StrCat("GetHostname(pid ", pid, "): ", s.message()));
  return name;
}

absl::Status WriteFileInContainer(pid_t pid, const std::string& path_in_container,
                                  const std::string& content) {
  std::string ctx = absl::StrCat("WriteFileInContainer(pid ", pid, ", ", path_in_container, ")");
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat(ctx, ": invalid pid"));
  if (path_in_container.empty() || path_in_container[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": path must be absolute"));
  }

  // Fast path, no helper: resolve the path under the process's root as if it
  // were "/" (symlinks stay inside), crossing the mounts of its namespace.
  std::string root = absl::StrCat("/proc/", pid, "/root");
  Fd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.ok()) {
    absl::Status s = ProcOpenError(pid, root, errno);
    return absl::Status(s.code(), absl::StrCat(ctx, ": ", s.message()));
  }
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  // Relative to root_fd (RESOLVE_IN_ROOT treats "/x" so too; a relative path
  // keeps it so even if the flags were ever lost).
  const size_t first = path_in_container.find_first_not_of('/');
  const char* rel = first == std::string::npos ? "." : path_in_container.c_str() + first;
  int fd = static_cast<int>(::syscall(SYS_openat2, root_fd.get(), rel, &how, sizeof how));
  int open_err = fd < 0 ? errno : 0;
  root_fd.Reset();
  if (fd >= 0) {
    struct stat st;
    if (::fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
      ::close(fd);
      return absl::FailedPreconditionError(absl::StrCat(ctx, ": not a regular file"));
    }
    NsChildResult r = ChildWriteAndSync(fd, content.data(), content.size());
    if (r.err != 0) return ErrnoStatus(r.err, absl::StrCat(ctx, ": ", r.what));
    return absl::OkStatus();
  }
  if (open_err != EROFS && open_err != ENOSYS) {
    return ErrnoStatus(open_err, absl::StrCat(ctx, ": open under /proc/", pid, "/root"));
  }

  // Read-only mount (or no openat2): join the mount namespace, clone the
  // file's mount, make the detached clone writable, write through it.
  Fd proc_fd(::open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!proc_fd.ok()) return ErrnoStatus(errno, absl::StrCat(ctx, ": open /proc"));
  const char* path = path_in_container.c_str();
  const char* data = content.data();
  size_t size = content.size();
  int procfd = proc_fd.get();
  absl::Status s = RunInNamespaces(
      pid, CLONE_NEWNS, [path, data, size, procfd](NsChildOutput&) -> NsChildResult {
        int wfd = ::open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (wfd < 0 && errno != EROFS) return {errno, "open in the mount namespace"};
        if (wfd < 0) {
          int tree = static_cast<int>(
              ::syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
          if (tree < 0) return {errno, "open_tree(OPEN_TREE_CLONE) of the read-only file"};
          struct mount_attr attr;
          ::memset(&attr, 0, sizeof attr);
          attr.attr_clr = MOUNT_ATTR_RDONLY;
          if (::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
            int err = errno;
            ::close(tree);
            return {err, "mount_setattr(clear MOUNT_ATTR_RDONLY) on the detached clone"};
          }
          char link[32];
          ChildFormatSelfFd(link, tree);
          wfd = ::openat(procfd, link, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
          int err = errno;
          ::close(tree);
          if (wfd < 0) return {err, "open through the writable clone of the read-only mount"};
        }
        struct stat st;
        if (::fstat(wfd, &st) == 0 && !S_ISREG(st.st_mode)) {
          ::close(wfd);
          return {EINVAL, "target is not a regular file"};
        }
        return ChildWriteAndSync(wfd, data, size);
      });
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat(ctx, ": ", s.message()));
  return s;
}

std::string FormatResolvConf(const std::vector<std::string>& servers,
                             const std::vector<std::string>& searches,
                             const std::vector<std::string>& options) {
  std::string out;
  if (!searches.empty()) absl::StrAppend(&out, "search ", absl::StrJoin(searches, " "), "\n");
  if (!servers.empty()) {
    absl::StrAppend(&out, "nameserver ", absl::StrJoin(servers, "\nnameserver "), "\n");
  }
  if (!options.empty()) absl::StrAppend(&out, "options ", absl::StrJoin(options, " "), "\n");
  return out;
}

absl::Status InjectBindMount(pid_t pid, const std::string& source, const std::string& target,
                             bool readonly) {
  return InjectBindMounts(pid, {BindMount{source, target, readonly}});
}

absl::Status InjectBindMounts(pid_t pid, const std::vector<BindMount>& mounts) {
  auto context = [&](const BindMount& m) {
    return absl::StrCat("InjectBindMount(pid ", pid, ", ", m.source, " -> ", m.target,
                        m.readonly ? ", ro" : ", rw", ")");
  };
  if (mounts.empty()) return absl::OkStatus();
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat(context(mounts[0]), ": invalid pid"));

  // Everything the child needs is made here: it may not allocate.
  struct Prepared {
    Fd tree;
    bool is_dir = false;
    bool remount_ro = false;
    std::string target;  // the child mutates its own copy (mkdir -p)
  };
  std::vector<Prepared> prepared(mounts.size());
  for (size_t i = 0; i < mounts.size(); ++i) {
    const BindMount& m = mounts[i];
    Prepared& p = prepared[i];
    const std::string ctx = context(m);
    if (m.target.size() < 2 || m.target[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat(ctx, ": target must be an absolute path below /"));
    }
    struct stat st;
    if (::stat(m.source.c_str(), &st) != 0) {
      return ErrnoStatus(errno, absl::StrCat(ctx, ": stat source"));
    }
    p.is_dir = S_ISDIR(st.st_mode);
    // Check the process first: a vanished pid is kNotFound before any mount
    // is cloned.
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
      return absl::NotFoundError(absl::StrCat(ctx, ": process ", pid, " does not exist"));
    }
    // The detached copy, in warmpoold's namespace (open_tree can only clone
    // mounts of the caller's own namespace).
    p.tree = Fd(static_cast<int>(
        ::syscall(SYS_open_tree, AT_FDCWD, m.source.c_str(),
                  OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (p.is_dir ? AT_RECURSIVE : 0))));
    if (!p.tree.ok()) {
      return ErrnoStatus(errno, absl::StrCat(ctx, ": open_tree(OPEN_TREE_CLONE) of source"));
    }
    // Private (containerd's "rprivate") and, if asked, read-only, before the
    // copy is visible anywhere.
    struct mount_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.propagation = MS_PRIVATE;
    if (m.readonly) attr.attr_set = MOUNT_ATTR_RDONLY;
    if (::syscall(SYS_mount_setattr, p.tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
                  sizeof attr) != 0) {
      if (errno != ENOSYS) {
        return ErrnoStatus(errno, absl::StrCat(ctx, ": mount_setattr on the detached copy"));
      }
      p.remount_ro = m.readonly;  // kernel < 5.12
    }
    p.target = m.target;
    while (p.target.size() > 1 && p.target.back() == '/') p.target.pop_back();
  }

  // One child for all of them: joining a mount namespace costs a clone and a
  // setns, several ms each on a busy node. The child reports which mount
  // failed in the output's first byte.
  char failed_at = 0;
  std::string output;
  absl::Status s = RunInNamespaces(
      pid, CLONE_NEWNS,
      [&prepared](NsChildOutput& out) -> NsChildResult {
        for (size_t i = 0; i < prepared.size(); ++i) {
          Prepared& p = prepared[i];
          char* tpath = p.target.data();
          if (out.capacity > 0) {
            out.data[0] = static_cast<char>(i);
            out.size = 1;
          }
          NsChildResult r = ChildMkdirParents(tpath);
          if (r.err != 0) return r;
          if (p.is_dir) {
            if (::mkdir(tpath, 0755) != 0 && errno != EEXIST)
              return {errno, "create mount point directory"};
          } else {
            int f = ::open(tpath, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
            if (f < 0) return {errno, "create mount point file"};
            ::close(f);
          }
          if (::syscall(SYS_move_mount, p.tree.get(), "", AT_FDCWD, tpath,
                        MOVE_MOUNT_F_EMPTY_PATH) != 0) {
            return {errno, "move_mount onto the target"};
          }
          if (p.remount_ro &&
              ::mount(nullptr, tpath, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
            int err = errno;
            ::umount2(tpath, MNT_DETACH);
            return {err, "remount read-only (MS_REMOUNT|MS_BIND|MS_RDONLY)"};
          }
        }
        return {};
      },
      &output, 1);
  if (!output.empty()) failed_at = output[0];
  if (!s.ok()) {
    const size_t at = std::min(static_cast<size_t>(static_cast<unsigned char>(failed_at)),
                               mounts.size() - 1);
    return absl::Status(s.code(), absl::StrCat(context(mounts[at]), ": ", s.message()));
  }
  return s;
}

}  // namespace warmpool
