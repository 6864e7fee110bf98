# Install layout and the Debian package (`cpack -G DEB` after the build).
#
# What a node gets (paths in the package):
#   /usr/sbin/warmpoold, /usr/bin/warmpoolctl
#   /etc/warmpool.toml                        conffile: packaging/warmpool.toml
#   /lib/systemd/system/warmpool.{service,socket}
#   /usr/share/warmpool/kubelet-warmpool.conf the kubelet drop-in (installed
#                                             by the admin, not the package)
#   /usr/share/doc/warmpool/README.md
#   /var/lib/warmpool                         state directory, mode 0700
# Maintainer scripts: packaging/debian/ (DPKG_ROOT-aware, so the package
# installs into a test root too). Dependencies come from the binaries' shared
# libraries (dpkg-shlibdeps).
#
# The binaries' own install() rules (daemon/CMakeLists.txt) use relative
# destinations (sbin, bin): under the package's /usr. The rest is placed
# absolutely where Debian's systemd and dpkg expect it.

set(WARMPOOL_SYSTEMD_UNIT_DIR "/lib/systemd/system" CACHE PATH
    "where the systemd units are installed")

install(FILES ${PROJECT_SOURCE_DIR}/packaging/warmpool.toml DESTINATION /etc
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/warmpool.service
              ${PROJECT_SOURCE_DIR}/systemd/warmpool.socket
        DESTINATION ${WARMPOOL_SYSTEMD_UNIT_DIR}
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/kubelet-warmpool.conf DESTINATION share/warmpool
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION share/doc/warmpool
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(DIRECTORY DESTINATION /var/lib/warmpool
        DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME warmpool)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "pre-warmed pod sandboxes behind the CRI")
set(CPACK_PACKAGE_DESCRIPTION
    "warmpoold sits between kubelet and containerd on the CRI, forwards every call, and\n\
keeps pools of frozen, pre-made pod sandboxes that it hands to kubelet instead of\n\
creating cold ones. Includes warmpoolctl, the systemd units and the kubelet drop-in.")
set(CPACK_PACKAGE_CONTACT "warmpool maintainers <warmpool@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# It fronts a CRI runtime; containerd is the one it is tested with.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "containerd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles
    ${PROJECT_SOURCE_DIR}/packaging/debian/postinst
    ${PROJECT_SOURCE_DIR}/packaging/debian/prerm
    ${PROJECT_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
