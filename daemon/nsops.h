// Namespace operations for the hand-off: what warmpool changes inside a
// running (or frozen) sandbox or container on kubelet's behalf: the hostname
// in the sandbox's UTS namespace, resolv.conf, and kubelet's mounts that a
// pre-started container lacks.
//
// Why a helper process. warmpoold is multi-threaded (gRPC), and setns() into
// a mount namespace refuses a caller that shares its filesystem context with
// other threads (EINVAL); a UTS setns would change the whole daemon's view.
// So everything that must run inside a namespace runs in a child process made
// with clone(CLONE_VM | CLONE_VFORK) on a stack of its own, as posix_spawn
// makes its children: it shares warmpoold's memory (no page tables to copy,
// no copy-on-write faults afterwards: ~0.1 ms instead of the 5-13 ms a fork
// of the daemon took on a 2-core VM) but has its own namespaces, root and
// file table, and the calling thread waits until it exits. Signals are
// blocked across the clone. Between the clone and _exit the child makes only
// raw system calls: every string and buffer it uses is prepared before the
// clone, and it writes its errno and the name of the step that failed into
// the caller's memory. A child still running after kNsHelperTimeout is
// ended by its own timer (SIGALRM; kDeadlineExceeded).
//
// Namespaces are opened as /proc/PID/ns/* before the clone (so a vanished
// process is a clear kNotFound before anything runs), then joined in a fixed
// order with the mount namespace last; after joining the mount namespace the
// child also chroots to /proc/PID/root, so paths "inside the container" mean
// what they mean to the process (runc pivots the container's root; the
// namespace's root mount is not always the process's root).
//
// Errors: absl::Status with the operation, pid, paths, the step that failed
// and errno text; the code follows errno (ENOENT -> kNotFound, EPERM ->
// kPermissionDenied, ...). A pid that does not exist is kNotFound.
//
// Kernel requirements: open_tree/move_mount (5.2), openat2 RESOLVE_IN_ROOT
// (5.6; older kernels fall back to the helper), mount_setattr (5.12; older
// kernels fall back to MS_REMOUNT for read-only). Needs CAP_SYS_ADMIN and
// CAP_SYS_CHROOT in the target's namespaces (warmpoold runs as root).
//
// Not covered: pid reuse between the caller learning a pid and the call (the
// caller passes the pid of a process it tracks, e.g. containerd's task pid);
// user namespaces (CRI pods on these nodes have none).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace warmpool {

// How long a namespace helper child may take before it is killed.
inline constexpr std::chrono::milliseconds kNsHelperTimeout{10000};

// What a function run in a namespace helper reports. err is an errno value
// (0: success). what names the step that failed; it must point to memory
// that existed before the clone (a string literal), since the parent reads it
// at the same address in its own memory.
struct NsChildResult {
  int err = 0;
  const char* what = "";
};

// Bytes the child may hand back to the parent (at most `capacity`, prepared
// before the clone). The child writes into data and sets size.
struct NsChildOutput {
  char* data = nullptr;
  size_t capacity = 0;
  size_t size = 0;
};

// Runs `fn` in a child process that has joined the namespaces of `pid` listed
// in `nstypes` (a mask of CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWNET,
// CLONE_NEWIPC, CLONE_NEWCGROUP; others are kInvalidArgument). With
// CLONE_NEWNS the child's root and working directory are the process's root.
// fn runs in the child: it must be async-signal-safe (raw system calls only:
// no malloc, stdio, locks, exceptions or logging) and return quickly. If
// `output` is given, up to `output_capacity` bytes that fn put into its
// NsChildOutput are returned there. A failure reported by fn becomes
// ErrnoToStatus("<what>: <errno text>"). A child still running after
// `timeout` is ended (kDeadlineExceeded).
absl::Status RunInNamespaces(pid_t pid, int nstypes,
                             absl::FunctionRef<NsChildResult(NsChildOutput&)> fn,
                             std::string* output = nullptr, size_t output_capacity = 0,
                             std::chrono::milliseconds timeout = kNsHelperTimeout);

// Sets the hostname in the UTS namespace of process `pid` (the sandbox's
// pause process): kubelet's hostname for an adopted pod. At most 64 bytes
// (HOST_NAME_MAX), else kInvalidArgument.
absl::Status SetHostname(pid_t pid, const std::string& hostname);

// Reads the hostname of the UTS namespace of `pid` back.
absl::StatusOr<std::string> GetHostname(pid_t pid);

// Replaces the content of the file `path_in_container` as seen by process
// `pid` (e.g. /etc/resolv.conf, which containerd bind-mounts from the
// sandbox's resolv.conf). Writes in place (O_WRONLY|O_TRUNC, never a rename,
// so the bind mount's inode and every other bind of the same file see the new
// content), then fsyncs. The file must exist (never created).
//
// The path is resolved in the process's view: through /proc/PID/root with
// openat2(RESOLVE_IN_ROOT), so symlinks inside the container cannot point
// the write at a host file, and bind mounts of the container's mount
// namespace are crossed. If that mount is read-only (containerd binds
// resolv.conf "ro" into containers with a read-only root filesystem), the
// helper joins the mount namespace, clones the file's mount with open_tree,
// clears read-only on the detached clone only (the container's mount stays
// read-only) and writes through it. A read-only superblock stays kernel-refused
// (EROFS).
absl::Status WriteFileInContainer(pid_t pid, const std::string& path_in_container,
                                  const std::string& content);

// Formats resolv.conf from a CRI DNSConfig exactly like containerd's
// parseDNSOptions (pkg/cri/server/sandbox_run.go): "search a b c\n", then
// one "nameserver X\n" per server, then "options x y\n"; each line only if its
// list is non-empty. All three empty gives "" (containerd then copies the
// host's /etc/resolv.conf instead). containerd 1.6 refuses more than 6
// search domains; the caller checks that (the request came through
// containerd's rules for the cold path already).
std::string FormatResolvConf(const std::vector<std::string>& servers,
                             const std::vector<std::string>& searches,
                             const std::vector<std::string>& options);

// Bind-mounts host path `source` (file or directory) onto `target` inside
// the mount namespace of `pid` (target is a path in the process's view).
// open_tree(source, OPEN_TREE_CLONE, plus AT_RECURSIVE for directories, like
// containerd's "rbind") in warmpoold's namespace; the detached copy is made
// private (containerd's default "rprivate": mounts made later under the host
// source do not appear in the container) and, if `readonly`, read-only
// recursively with mount_setattr before it becomes visible. Then the helper
// joins the mount namespace, creates the target if missing (mkdir -p for a
// directory, an empty file for a file, parents as directories 0755) and
// move_mount()s the copy onto it. The host's namespace never has the mount.
// On kernels without mount_setattr (< 5.12), read-only is applied after the
// move with MS_REMOUNT|MS_BIND|MS_RDONLY (top mount only) and propagation is
// left as cloned.
absl::Status InjectBindMount(pid_t pid, const std::string& source, const std::string& target,
                             bool readonly);

// The same for several mounts in one helper process (one clone and setns for
// all), in order; the first failure stops it and names its mount. Mounts
// done before it stay.
struct BindMount {
  std::string source;
  std::string target;
  bool readonly = false;
};
absl::Status InjectBindMounts(pid_t pid, const std::vector<BindMount>& mounts);

}  // namespace warmpool
