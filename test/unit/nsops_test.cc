// Namespace operations against the real kernel: needs root (skips otherwise).
//
// Each test gets a "holder" process standing in for a pod's sandbox or
// container: it unshares a UTS and a mount namespace, makes / rprivate,
// mounts a tmpfs as its future root, bind-mounts host files onto
// /etc/resolv.conf (rw) and /etc/ro.conf (ro) in it, and chroots there (so,
// like a runc container, its root is not its namespace's root mount). It then
// serves commands over a pipe (read a file, write a file, report its
// hostname), so what "the container sees" is checked by the container itself,
// not through the code under test.
//
// Clean-up does not trust the code under test: TearDown kills and reaps the
// holder (its namespace and every mount in it go with it), detaches the host
// mounts the test made, and removes the temporary tree.
#include "daemon/nsops.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace warmpool {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadText(const std::string& file) {
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteText(const std::string& file, const std::string& text) {
  std::ofstream out(file, std::ios::trunc);
  out << text;
}

bool ReadAll(int fd, void* buf, size_t len) {
  char* p = static_cast<char*>(buf);
  while (len > 0) {
    ssize_t n = ::read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool WriteAll(int fd, const void* buf, size_t len) {
  const char* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

std::string Hostname() {
  char h[256] = {};
  ::gethostname(h, sizeof h - 1);
  return h;
}

// Message on the holder's pipes: int32 code + uint32 length + bytes.
bool SendMsg(int fd, int32_t code, const std::string& data) {
  uint32_t len = static_cast<uint32_t>(data.size());
  return WriteAll(fd, &code, sizeof code) && WriteAll(fd, &len, sizeof len) &&
         WriteAll(fd, data.data(), data.size());
}

bool RecvMsg(int fd, int32_t* code, std::string* data) {
  uint32_t len = 0;
  if (!ReadAll(fd, code, sizeof *code) || !ReadAll(fd, &len, sizeof len)) return false;
  data->assign(len, '\0');
  return len == 0 || ReadAll(fd, data->data(), len);
}

// The mount-point column (5th) of every line of a mountinfo file.
std::vector<std::string> MountinfoLines(const std::string& file) {
  std::vector<std::string> lines;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string MountPointOf(const std::string& line) {
  std::istringstream is(line);
  std::string f;
  for (int i = 0; i < 5 && (is >> f); ++i) {
  }
  return f;
}

// The mountinfo line whose mount point is exactly `mp`, or "".
std::string FindMount(const std::string& mountinfo, const std::string& mp) {
  std::string found;
  for (const std::string& l : MountinfoLines(mountinfo)) {
    if (MountPointOf(l) == mp) found = l;  // the last one is the top of the stack
  }
  return found;
}

// Paths inside the holder. None exists on the host, so an implementation
// that wrongly acts in warmpoold's own namespace fails (ENOENT) instead of
// clobbering a host file, and TearDown finds anything it created (kHostGuards).
const std::string kEtc = "/etc/nsops-test";
const std::string kResolv = kEtc + "/resolv.conf";  // rw bind of <tmp>/resolv.conf
const std::string kRoConf = kEtc + "/ro.conf";      // ro bind of <tmp>/ro.conf
const std::string kExisting = "/nsops-test/existing";
const char* const kHostGuards[] = {"/etc/nsops-test", "/nsops-test", "/var/lib/nsops-test",
                                   "/run/nsops-test"};

constexpr int32_t kOpRead = 'R', kOpWrite = 'W', kOpHostname = 'H';

class NsOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (setns, mounts, sethostname)";
    for (const char* g : kHostGuards) {
      ASSERT_FALSE(fs::exists(g)) << g << " exists on the host (left by a broken run?)";
    }
    char tmpl[] = "/tmp/nsops-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
    root_ = dir_ + "/root";  // the holder's root (a tmpfs only in its namespace)
    fs::create_directories(root_);
    WriteText(dir_ + "/resolv.conf", "nameserver 192.0.2.1\n");
    WriteText(dir_ + "/ro.conf", "read-only original\n");
    WriteText(dir_ + "/victim", "host file\n");
    host_hostname_ = Hostname();
    StartHolder();
  }

  void TearDown() override {
    if (holder_ > 0) {
      ::kill(holder_, SIGKILL);
      ::waitpid(holder_, nullptr, 0);
      holder_ = -1;
    }
    if (cmd_fd_ >= 0) ::close(cmd_fd_);
    if (resp_fd_ >= 0) ::close(resp_fd_);
    for (auto it = host_mounts_.rbegin(); it != host_mounts_.rend(); ++it) {
      ::umount2(it->c_str(), MNT_DETACH);
    }
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
    if (::geteuid() != 0) return;
    // Whatever a broken implementation did to the host is undone and fails.
    if (!host_hostname_.empty() && Hostname() != host_hostname_) {
      ADD_FAILURE() << "the host's hostname was changed to " << Hostname();
      ::sethostname(host_hostname_.data(), host_hostname_.size());
    }
    for (const char* g : kHostGuards) {
      if (!fs::exists(g)) continue;
      ADD_FAILURE() << g << " was created on the host";
      for (const std::string& l : MountinfoLines("/proc/self/mountinfo")) {
        if (MountPointOf(l).rfind(g, 0) == 0) ::umount2(MountPointOf(l).c_str(), MNT_DETACH);
      }
      std::error_code ec;
      fs::remove_all(g, ec);
    }
  }

  // Forks the holder (the test is single-threaded here).
  void StartHolder() {
    int cmd[2], resp[2];
    ASSERT_EQ(::pipe2(cmd, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(resp, O_CLOEXEC), 0);
    const std::string root = root_, dir = dir_;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      ::close(cmd[1]);
      ::close(resp[0]);
      HolderMain(cmd[0], resp[1], root, dir);
    }
    ::close(cmd[0]);
    ::close(resp[1]);
    holder_ = pid;
    cmd_fd_ = cmd[1];
    resp_fd_ = resp[0];
    int32_t code = -1;
    std::string msg;
    ASSERT_TRUE(RecvMsg(resp_fd_, &code, &msg)) << "holder died during set-up";
    ASSERT_EQ(code, 0) << "holder set-up failed: " << msg << ": " << std::strerror(code);
  }

  // The stand-in container. Reports set-up failure as (errno, step).
  [[noreturn]] static void HolderMain(int cmd_fd, int resp_fd, const std::string& root,
                                      const std::string& dir) {
    auto fail = [&](const char* step) {
      int err = errno;
      SendMsg(resp_fd, err == 0 ? EIO : err, step);
      ::_exit(1);
    };
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no orphaned namespaces if the test dies
    if (::unshare(CLONE_NEWUTS | CLONE_NEWNS) != 0) fail("unshare");
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("rprivate /");
    if (::sethostname("nsops-holder", 12) != 0) fail("sethostname");
    if (::mount("tmpfs", root.c_str(), "tmpfs", 0, "mode=0755") != 0) fail("tmpfs root");
    for (const char* d : {"/etc", "/etc/nsops-test", "/nsops-test", "/nsops-test/existing", "/run",
                          "/var", "/tmp"}) {
      if (::mkdir((root + d).c_str(), 0755) != 0) fail("mkdir");
    }
    for (const std::string& f : {kResolv, kRoConf}) {
      int fd = ::open((root + f).c_str(), O_CREAT | O_WRONLY, 0644);
      if (fd < 0) fail("create mount point");
      ::close(fd);
    }
    if (::mount((dir + "/resolv.conf").c_str(), (root + kResolv).c_str(), nullptr, MS_BIND,
                nullptr) != 0)
      fail("bind resolv.conf");
    if (::mount((dir + "/ro.conf").c_str(), (root + kRoConf).c_str(), nullptr, MS_BIND, nullptr) !=
        0)
      fail("bind ro.conf");
    if (::mount(nullptr, (root + kRoConf).c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY,
                nullptr) != 0)
      fail("remount ro.conf read-only");
    // A symlink that, resolved against the host's root, points at a host file.
    if (::symlink((dir + "/victim").c_str(), (root + kEtc + "/escape").c_str()) != 0)
      fail("symlink");
    if (::chroot(root.c_str()) != 0 || ::chdir("/") != 0) fail("chroot");
    SendMsg(resp_fd, 0, "ready");
    for (;;) {
      int32_t op;
      std::string arg;
      if (!RecvMsg(cmd_fd, &op, &arg)) ::_exit(0);
      if (op == kOpHostname) {
        char h[256] = {};
        ::gethostname(h, sizeof h - 1);
        SendMsg(resp_fd, 0, h);
      } else if (op == kOpRead) {
        int fd = ::open(arg.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
          SendMsg(resp_fd, errno, "");
          continue;
        }
        std::string out;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
        ::close(fd);
        SendMsg(resp_fd, 0, out);
      } else if (op == kOpWrite) {
        size_t nul = arg.find('\0');
        std::string path = arg.substr(0, nul), content = arg.substr(nul + 1);
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
          SendMsg(resp_fd, errno, "");
          continue;
        }
        int err = WriteAll(fd, content.data(), content.size()) ? 0 : errno;
        ::close(fd);
        SendMsg(resp_fd, err, "");
      }
    }
  }

  // Asks the holder; returns its errno (0) and fills *out.
  int Ask(int32_t op, const std::string& arg, std::string* out) {
    std::string ignored;
    if (out == nullptr) out = &ignored;
    int32_t code = -1;
    if (!SendMsg(cmd_fd_, op, arg) || !RecvMsg(resp_fd_, &code, out)) {
      ADD_FAILURE() << "holder did not answer";
      return -1;
    }
    return code;
  }
  // What the holder reads at `path` (its view), or "<errno N>".
  std::string HolderRead(const std::string& path) {
    std::string out;
    int err = Ask(kOpRead, path, &out);
    return err == 0 ? out : "<errno " + std::to_string(err) + ">";
  }
  int HolderWrite(const std::string& path, const std::string& content) {
    return Ask(kOpWrite, path + std::string(1, '\0') + content, nullptr);
  }
  std::string HolderHostname() {
    std::string out;
    EXPECT_EQ(Ask(kOpHostname, "", &out), 0);
    return out;
  }
  std::string HolderMountinfo() { return "/proc/" + std::to_string(holder_) + "/mountinfo"; }

  // A pid that surely does not exist now: a reaped child's.
  static pid_t DeadPid() {
    pid_t p = ::fork();
    if (p == 0) ::_exit(0);
    ::waitpid(p, nullptr, 0);
    return p;
  }

  void HostMount(const std::string& src, const std::string& target, const char* type,
                 unsigned long flags) {
    ASSERT_EQ(::mount(src.c_str(), target.c_str(), type, flags, nullptr), 0)
        << target << ": " << std::strerror(errno);
    host_mounts_.push_back(target);
  }

  std::string dir_, root_, host_hostname_;
  pid_t holder_ = -1;
  int cmd_fd_ = -1, resp_fd_ = -1;
  std::vector<std::string> host_mounts_;
};

// ---------------------------------------------------------------- hostname

TEST_F(NsOpsTest, SetHostnameChangesOnlyTheTargetsUtsNamespace) {
  ASSERT_EQ(HolderHostname(), "nsops-holder");
  ASSERT_TRUE(SetHostname(holder_, "adopted-pod-7f9c").ok());
  EXPECT_EQ(HolderHostname(), "adopted-pod-7f9c");
  auto got = GetHostname(holder_);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "adopted-pod-7f9c");
  EXPECT_EQ(Hostname(), host_hostname_) << "the host's hostname changed";

  // 64 bytes is the kernel's limit; 65 is refused before anything runs.
  std::string max(64, 'a');
  ASSERT_TRUE(SetHostname(holder_, max).ok());
  EXPECT_EQ(HolderHostname(), max);
  absl::Status s = SetHostname(holder_, std::string(65, 'b'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(HolderHostname(), max);
}

// ---------------------------------------------------------------- files

TEST_F(NsOpsTest, WriteFileInContainerWritesThroughTheBindMountInPlace) {
  struct stat before;
  ASSERT_EQ(::stat((dir_ + "/resolv.conf").c_str(), &before), 0);
  const std::string content =
      FormatResolvConf({"10.96.0.10"}, {"default.svc.cluster.local", "cluster.local"}, {"ndots:5"});
  absl::Status s = WriteFileInContainer(holder_, kResolv, content);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(HolderRead(kResolv), content);
  EXPECT_EQ(ReadText(dir_ + "/resolv.conf"), content) << "host file behind the bind mount";
  struct stat after;
  ASSERT_EQ(::stat((dir_ + "/resolv.conf").c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "the file was replaced, not written in place";
  // The path exists only in the holder's namespace: nothing was created on
  // the host side under its root directory.
  EXPECT_FALSE(fs::exists(root_ + kResolv));

  // Shorter content truncates.
  ASSERT_TRUE(WriteFileInContainer(holder_, kResolv, "nameserver 127.0.0.1\n").ok());
  EXPECT_EQ(HolderRead(kResolv), "nameserver 127.0.0.1\n");
  EXPECT_EQ(ReadText(dir_ + "/resolv.conf"), "nameserver 127.0.0.1\n");
}

TEST_F(NsOpsTest, WriteFileInContainerWritesAReadOnlyBindMountWithoutMakingItWritable) {
  ASSERT_EQ(HolderWrite(kRoConf, "container write\n"), EROFS) << "fixture: not read-only";
  absl::Status s = WriteFileInContainer(holder_, kRoConf, "nameserver 10.0.0.10\n");
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(HolderRead(kRoConf), "nameserver 10.0.0.10\n");
  EXPECT_EQ(ReadText(dir_ + "/ro.conf"), "nameserver 10.0.0.10\n");
  EXPECT_EQ(HolderWrite(kRoConf, "container write\n"), EROFS)
      << "the container's mount became writable";
}

TEST_F(NsOpsTest, WriteFileInContainerResolvesSymlinksInsideTheContainer) {
  // /etc/escape -> <host tmp>/victim: followed on the host it would hit the
  // host's file; inside the container that path does not exist.
  absl::Status s = WriteFileInContainer(holder_, kEtc + "/escape", "pwned\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(ReadText(dir_ + "/victim"), "host file\n");

  s = WriteFileInContainer(holder_, kEtc + "/missing.conf", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("/missing.conf"));
  EXPECT_EQ(HolderRead(kEtc + "/missing.conf"), "<errno " + std::to_string(ENOENT) + ">")
      << "a missing file must not be created";

  s = WriteFileInContainer(holder_, kEtc, "x");
  EXPECT_FALSE(s.ok()) << "a directory is not a file";
}

TEST(FormatResolvConfTest, MatchesContainerdsParseDNSOptions) {
  EXPECT_EQ(FormatResolvConf({"10.96.0.10", "8.8.8.8"},
                             {"default.svc.cluster.local", "svc.cluster.local", "cluster.local"},
                             {"ndots:5", "timeout:1"}),
            "search default.svc.cluster.local svc.cluster.local cluster.local\n"
            "nameserver 10.96.0.10\n"
            "nameserver 8.8.8.8\n"
            "options ndots:5 timeout:1\n");
  EXPECT_EQ(FormatResolvConf({"127.0.0.1"}, {}, {}), "nameserver 127.0.0.1\n");
  EXPECT_EQ(FormatResolvConf({}, {"a.example"}, {}), "search a.example\n");
  EXPECT_EQ(FormatResolvConf({}, {}, {"edns0"}), "options edns0\n");
  EXPECT_EQ(FormatResolvConf({}, {}, {}), "");
}

// ---------------------------------------------------------------- mounts

TEST_F(NsOpsTest, InjectBindMountOfADirectoryIsRecursivePrivateAndOnlyInTheContainer) {
  // Host volume: a shared tmpfs with a submount, so recursion and
  // propagation are both observable.
  const std::string vol = dir_ + "/vol";
  fs::create_directories(vol);
  HostMount("tmpfs", vol, "tmpfs", 0);
  ASSERT_EQ(::mount(nullptr, vol.c_str(), nullptr, MS_SHARED, nullptr), 0) << std::strerror(errno);
  WriteText(vol + "/data", "volume-data\n");
  fs::create_directories(vol + "/sub");
  HostMount("tmpfs", vol + "/sub", "tmpfs", 0);
  WriteText(vol + "/sub/subdata", "sub-data\n");

  const std::string target = "/var/lib/nsops-test/pods/uid-1/volumes/v";  // missing: mkdir -p
  absl::Status s = InjectBindMount(holder_, vol, target, /*readonly=*/false);
  ASSERT_TRUE(s.ok()) << s;

  EXPECT_EQ(HolderRead(target + "/data"), "volume-data\n");
  EXPECT_EQ(HolderRead(target + "/sub/subdata"), "sub-data\n") << "not recursive";
  EXPECT_EQ(HolderWrite(target + "/from-container", "hello\n"), 0);
  EXPECT_EQ(ReadText(vol + "/from-container"), "hello\n");

  // The holder's namespace has the mount (its mountinfo shows paths in its
  // view); the host's does not.
  std::string line = FindMount(HolderMountinfo(), target);
  ASSERT_NE(line, "") << "no mount at " << target << " in the holder's mountinfo";
  EXPECT_THAT(line, Not(HasSubstr("shared:"))) << "injected mount is not private: " << line;
  for (const std::string& l : MountinfoLines("/proc/self/mountinfo")) {
    EXPECT_THAT(MountPointOf(l), Not(HasSubstr("/var/lib/nsops-test"))) << l;
    EXPECT_THAT(MountPointOf(l), Not(HasSubstr(root_))) << l;
  }

  // rprivate: a mount made on the host later does not reach the container.
  fs::create_directories(vol + "/late");
  HostMount("tmpfs", vol + "/late", "tmpfs", 0);
  WriteText(vol + "/late/file", "late\n");
  EXPECT_EQ(HolderRead(target + "/late/file"), "<errno " + std::to_string(ENOENT) + ">")
      << "host mount propagated into the container";

  // Onto an existing directory too.
  s = InjectBindMount(holder_, vol, kExisting, false);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(HolderRead(kExisting + "/data"), "volume-data\n");
}

TEST_F(NsOpsTest, InjectBindMountOfAFileReadOnly) {
  const std::string token = dir_ + "/token";
  WriteText(token, "secret-token\n");
  const std::string target = "/run/nsops-test/secrets/kubernetes.io/serviceaccount/token";
  absl::Status s = InjectBindMount(holder_, token, target, /*readonly=*/true);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(HolderRead(target), "secret-token\n");
  EXPECT_EQ(HolderWrite(target, "overwrite\n"), EROFS);
  std::string line = FindMount(HolderMountinfo(), target);
  ASSERT_NE(line, "");
  EXPECT_THAT(line, HasSubstr(" ro,")) << line;
  // Read-only is the container's mount only: the host can still write, and
  // the container sees it (same inode).
  WriteText(token, "rotated\n");
  EXPECT_EQ(HolderRead(target), "rotated\n");
  for (const std::string& l : MountinfoLines("/proc/self/mountinfo")) {
    EXPECT_THAT(MountPointOf(l), Not(HasSubstr("/run/nsops-test"))) << l;
  }

  // A read-write file mount, onto a new file next to it.
  WriteText(dir_ + "/hosts", "127.0.0.1 localhost\n");
  ASSERT_TRUE(InjectBindMount(holder_, dir_ + "/hosts", kEtc + "/hosts", false).ok());
  EXPECT_EQ(HolderRead(kEtc + "/hosts"), "127.0.0.1 localhost\n");
  EXPECT_EQ(HolderWrite(kEtc + "/hosts", "10.0.0.1 pod\n"), 0);
  EXPECT_EQ(ReadText(dir_ + "/hosts"), "10.0.0.1 pod\n");
}

TEST_F(NsOpsTest, InjectBindMountErrors) {
  absl::Status s = InjectBindMount(holder_, dir_ + "/no-such-source", "/nsops-test/x", false);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("no-such-source"));

  // A file source onto an existing directory: the child's failure comes back
  // with its step and errno.
  WriteText(dir_ + "/f", "f");
  s = InjectBindMount(holder_, dir_ + "/f", kExisting, false);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr(kExisting));
  std::cout << "[ info     ] file onto directory: " << s << "\n";

  s = InjectBindMount(holder_, dir_ + "/f", "relative/path", false);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST_F(NsOpsTest, InjectBindMountsDoesSeveralInOneHelperAndNamesTheOneThatFailed) {
  WriteText(dir_ + "/a", "a\n");
  WriteText(dir_ + "/b", "b\n");
  absl::Status s = InjectBindMounts(holder_, {{dir_ + "/a", "/run/nsops-batch/a", false},
                                              {dir_ + "/b", "/run/nsops-batch/sub/b", true}});
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(HolderRead("/run/nsops-batch/a"), "a\n");
  EXPECT_EQ(HolderRead("/run/nsops-batch/sub/b"), "b\n");
  EXPECT_EQ(HolderWrite("/run/nsops-batch/sub/b", "x\n"), EROFS);
  EXPECT_TRUE(InjectBindMounts(holder_, {}).ok());

  // The second of three fails (a file onto a directory): the error names it,
  // the first is done, the third is not tried.
  s = InjectBindMounts(holder_, {{dir_ + "/a", "/run/nsops-batch/c", false},
                                 {dir_ + "/b", kExisting, false},
                                 {dir_ + "/a", "/run/nsops-batch/d", false}});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr(kExisting)) << s;
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("/run/nsops-batch/c"))) << s;
  EXPECT_EQ(HolderRead("/run/nsops-batch/c"), "a\n");
  EXPECT_EQ(FindMount(HolderMountinfo(), "/run/nsops-batch/d"), "");
}

// ---------------------------------------------------------------- errors

TEST_F(NsOpsTest, AProcessThatDoesNotExistIsNotFound) {
  const pid_t dead = DeadPid();
  const std::string pid_text = "process " + std::to_string(dead) + " does not exist";
  absl::Status s = SetHostname(dead, "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(pid_text));
  auto h = GetHostname(dead);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kNotFound) << h.status();
  s = WriteFileInContainer(dead, kResolv, "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(pid_text));
  WriteText(dir_ + "/f", "f");
  s = InjectBindMount(dead, dir_ + "/f", "/nsops-test/f", false);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(pid_text));
  std::cout << "[ info     ] " << s << "\n";
}

TEST_F(NsOpsTest, RunInNamespacesReportsOutputErrorsAndCrashes) {
  std::string out;
  const char* path = kRoConf.c_str();  // prepared before the clone
  absl::Status s = RunInNamespaces(
      holder_, CLONE_NEWUTS | CLONE_NEWNS,
      [path](NsChildOutput& o) -> NsChildResult {
        // In the holder's mount namespace and root: its ro.conf.
        int fd = ::open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return {errno, "open ro.conf"};
        ssize_t n = ::read(fd, o.data, o.capacity);
        int err = errno;
        ::close(fd);
        if (n < 0) return {err, "read"};
        o.size = static_cast<size_t>(n);
        return {};
      },
      &out, 256);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(out, "read-only original\n");

  s = RunInNamespaces(holder_, CLONE_NEWUTS, [](NsChildOutput&) -> NsChildResult {
    return {EACCES, "the test's step"};
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("the test's step"));

  s = RunInNamespaces(holder_, CLONE_NEWUTS, [](NsChildOutput&) -> NsChildResult {
    ::syscall(SYS_kill, ::syscall(SYS_getpid), SIGKILL);
    return {};
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("killed by signal 9"));

  s = RunInNamespaces(holder_, CLONE_NEWUSER, [](NsChildOutput&) -> NsChildResult { return {}; });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;

  // A helper that hangs is ended by its timer, and the caller gets on.
  s = RunInNamespaces(
      holder_, CLONE_NEWUTS,
      [](NsChildOutput&) -> NsChildResult {
        struct timespec t {30, 0};
        ::nanosleep(&t, nullptr);
        return {};
      },
      nullptr, 0, std::chrono::milliseconds(300));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("did not finish within 300 ms"));
}

// ---------------------------------------------------------------- threads

TEST_F(NsOpsTest, ConcurrentCallsFromManyThreadsLeaveNoChildren) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        if (t % 2 == 0) {
          std::string name = "pod-" + std::to_string(t) + "-" + std::to_string(i);
          if (!SetHostname(holder_, name).ok()) ++failures;
          if (!GetHostname(holder_).ok()) ++failures;
        } else {
          if (!WriteFileInContainer(holder_, kResolv,
                                    "nameserver 10.0.0." + std::to_string(t) + "\n")
                   .ok())
            ++failures;
          if (!WriteFileInContainer(holder_, kRoConf, "x\n").ok()) ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  // Every helper was reaped: the holder is our only child, and it is alive.
  int st;
  EXPECT_EQ(::waitpid(-1, &st, WNOHANG), 0);
  EXPECT_THAT(HolderRead(kResolv), HasSubstr("nameserver 10.0.0."));
}

// ---------------------------------------------------------------- timings

struct Timing {
  std::vector<double> us;
  void Print(const char* what) {
    std::sort(us.begin(), us.end());
    std::cout << "[ timing   ] " << what << ": n=" << us.size() << " min=" << us.front()
              << " us median=" << us[us.size() / 2] << " us p90=" << us[us.size() * 9 / 10]
              << " us max=" << us.back() << " us\n";
  }
};

template <typename F>
void TimeIt(Timing& t, F f) {
  auto a = std::chrono::steady_clock::now();
  f();
  auto b = std::chrono::steady_clock::now();
  t.us.push_back(std::chrono::duration<double, std::micro>(b - a).count());
}

TEST_F(NsOpsTest, Timings) {
  constexpr int kRuns = 50;
  Timing noop, set, get, write, write_ro, inject_file, inject_dir, inject_ro;
  fs::create_directories(dir_ + "/voldir");
  WriteText(dir_ + "/voldir/x", "x");
  WriteText(dir_ + "/token", "t");
  const std::string resolv = FormatResolvConf({"10.96.0.10"}, {"svc.cluster.local"}, {"ndots:5"});
  for (int i = 0; i < kRuns; ++i) {
    TimeIt(noop, [&] {
      ASSERT_TRUE(
          RunInNamespaces(holder_, CLONE_NEWUTS | CLONE_NEWNS, [](NsChildOutput&) -> NsChildResult {
            return {};
          }).ok());
    });
    TimeIt(set, [&] { ASSERT_TRUE(SetHostname(holder_, "pod-" + std::to_string(i)).ok()); });
    TimeIt(get, [&] { ASSERT_TRUE(GetHostname(holder_).ok()); });
    TimeIt(write, [&] { ASSERT_TRUE(WriteFileInContainer(holder_, kResolv, resolv).ok()); });
    TimeIt(write_ro, [&] { ASSERT_TRUE(WriteFileInContainer(holder_, kRoConf, resolv).ok()); });
    const std::string n = std::to_string(i);
    TimeIt(inject_file, [&] {
      ASSERT_TRUE(InjectBindMount(holder_, dir_ + "/token", "/nsops-test/inj/f" + n, false).ok());
    });
    TimeIt(inject_ro, [&] {
      ASSERT_TRUE(InjectBindMount(holder_, dir_ + "/token", "/nsops-test/inj/r" + n, true).ok());
    });
    TimeIt(inject_dir, [&] {
      ASSERT_TRUE(InjectBindMount(holder_, dir_ + "/voldir", "/nsops-test/inj/d" + n, false).ok());
    });
  }
  EXPECT_EQ(HolderRead("/nsops-test/inj/d49/x"), "x");
  noop.Print("RunInNamespaces (uts+mnt, no-op: the helper's floor)");
  set.Print("SetHostname");
  get.Print("GetHostname");
  write.Print("WriteFileInContainer (rw bind, openat2 fast path)");
  write_ro.Print("WriteFileInContainer (ro bind, helper + open_tree)");
  inject_file.Print("InjectBindMount (file, rw, new target)");
  inject_ro.Print("InjectBindMount (file, ro, new target)");
  inject_dir.Print("InjectBindMount (dir, rw, new target)");
}

}  // namespace
}  // namespace warmpool
