# packaging/install.cmake — install rules and the Debian package (CPack DEB).
# Included once from the end of the top-level CMakeLists.txt (issue 8).
#
#   cmake -S . -B build && cmake --build build && sudo cmake --install build
#   cd build && cpack -G DEB        # -> tokenwatch_<version>_<arch>.deb
#
# The daemon's compiled-in defaults name /etc/tokenwatch/tokenwatch.json and
# /usr/share/tokenwatch/formats, so the install prefix defaults to /usr: only
# then do the installed files sit where the binary looks for them. With any
# other prefix the installed config names its formats_dir explicitly and the
# unit passes -c, but `tokenwatch check` without -c looks in /etc.

if(CMAKE_INSTALL_PREFIX_INITIALIZED_TO_DEFAULT)
  set(CMAKE_INSTALL_PREFIX /usr CACHE PATH
      "Install prefix (/usr: where tokenwatch's compiled-in defaults point)" FORCE)
endif()
include(GNUInstallDirs)   # /usr -> sysconfdir /etc, localstatedir /var

set(TW_PKG_DIR ${PROJECT_SOURCE_DIR}/packaging)
set(TW_SHARE_DIR ${CMAKE_INSTALL_FULL_DATADIR}/tokenwatch)
set(TW_ETC_DIR ${CMAKE_INSTALL_FULL_SYSCONFDIR}/tokenwatch)
set(TW_DOC_DIR ${CMAKE_INSTALL_FULL_DOCDIR})
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  # Debian 12's systemd.pc: systemdsystemunitdir=/lib/systemd/system.
  set(TW_UNIT_DIR_DEFAULT /lib/systemd/system)
else()
  set(TW_UNIT_DIR_DEFAULT ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
endif()
set(TW_SYSTEMD_UNIT_DIR ${TW_UNIT_DIR_DEFAULT} CACHE PATH
    "Where tokenwatch.service is installed")

# Generated copies (build tree only) whose paths follow the install prefix.
# For /usr they are byte-identical to the sources.
set(TW_GEN ${PROJECT_BINARY_DIR}/packaging)
file(MAKE_DIRECTORY ${TW_GEN})
file(READ ${TW_PKG_DIR}/tokenwatch.service tw_text)
string(REPLACE "/usr/bin/tokenwatch" "${CMAKE_INSTALL_FULL_BINDIR}/tokenwatch" tw_text "${tw_text}")
string(REPLACE "/etc/tokenwatch/" "${TW_ETC_DIR}/" tw_text "${tw_text}")
string(REPLACE "/usr/share/doc/tokenwatch/" "${TW_DOC_DIR}/" tw_text "${tw_text}")
file(GENERATE OUTPUT ${TW_GEN}/tokenwatch.service CONTENT "${tw_text}")
file(READ ${TW_PKG_DIR}/tokenwatch.json tw_text)
if(NOT TW_SHARE_DIR STREQUAL "/usr/share/tokenwatch")
  string(REPLACE "\"state_dir\"" "\"formats_dir\": \"${TW_SHARE_DIR}/formats\",\n  \"state_dir\""
         tw_text "${tw_text}")
endif()
file(GENERATE OUTPUT ${TW_GEN}/tokenwatch.json CONTENT "${tw_text}")
file(READ ${TW_PKG_DIR}/debian/conffiles tw_text)
string(REPLACE "/etc/" "${CMAKE_INSTALL_FULL_SYSCONFDIR}/" tw_text "${tw_text}")
file(GENERATE OUTPUT ${TW_GEN}/debian/conffiles CONTENT "${tw_text}")

# Man pages, compressed as Debian policy wants (gzip -n: reproducible).
find_program(TW_GZIP gzip)
set(tw_man_outputs)
foreach(page tokenwatch.1 tokenwatch.json.5)
  string(REGEX MATCH "[0-9]$" section ${page})
  if(TW_GZIP)
    add_custom_command(OUTPUT ${TW_GEN}/man/${page}.gz
      COMMAND ${CMAKE_COMMAND} -E make_directory ${TW_GEN}/man
      COMMAND ${TW_GZIP} -9nc ${PROJECT_SOURCE_DIR}/docs/${page} > ${TW_GEN}/man/${page}.gz
      DEPENDS ${PROJECT_SOURCE_DIR}/docs/${page} VERBATIM)
    list(APPEND tw_man_outputs ${TW_GEN}/man/${page}.gz)
    install(FILES ${TW_GEN}/man/${page}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  else()
    install(FILES docs/${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  endif()
endforeach()
add_custom_target(tw_manpages ALL DEPENDS ${tw_man_outputs})

install(TARGETS tokenwatch RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Formats to share/tokenwatch/formats and the default detection rules to
# share/tokenwatch/rules/default.json: the paths the binary defaults to
# (TW_DEFAULT_FORMATS_DIR, TW_DEFAULT_RULES_FILE). The demo config points at
# /tmp and is not installed; the schemas have their own place.
install(DIRECTORY rules/formats DESTINATION ${CMAKE_INSTALL_DATADIR}/tokenwatch
        FILES_MATCHING PATTERN "*.json")
install(FILES rules/default.json DESTINATION ${CMAKE_INSTALL_DATADIR}/tokenwatch/rules)
# Example freeze/unfreeze hooks (python3 scripts; docs/hooks.md), run by the
# daemon from freeze.command / unfreeze.command: executables, mode 0755.
install(PROGRAMS rules/hooks/vault-revoke rules/hooks/webhook
        DESTINATION ${CMAKE_INSTALL_DATADIR}/tokenwatch/hooks
        PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                    WORLD_READ WORLD_EXECUTE)
install(FILES docs/hooks.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES rules/tokenwatch.schema.json rules/format.schema.json rules/rules.schema.json
        DESTINATION ${CMAKE_INSTALL_DATADIR}/tokenwatch/schema)
install(FILES docs/configuration.md docs/install.md docs/detection.md docs/api.md README.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${TW_GEN}/tokenwatch.json DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES ${TW_GEN}/tokenwatch.service DESTINATION ${TW_SYSTEMD_UNIT_DIR})
install(FILES ${TW_PKG_DIR}/logrotate/tokenwatch
        DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/logrotate.d)
# The example config, never over an existing one (an admin's edits win; the
# .deb relies on dpkg's conffile handling instead, its staging dir is empty).
install(CODE "
  set(tw_dest \"\$ENV{DESTDIR}${TW_ETC_DIR}/tokenwatch.json\")
  if(EXISTS \"\${tw_dest}\")
    message(STATUS \"Keeping existing: \${tw_dest}\")
  else()
    # file(INSTALL) prepends DESTDIR to an absolute destination itself.
    file(INSTALL DESTINATION \"${TW_ETC_DIR}\" TYPE FILE
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
         FILES \"${TW_GEN}/tokenwatch.json\")
  endif()")

# ---- Debian package -------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME tokenwatch)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "tokenwatch maintainers <tokenwatch@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "per-token anomaly detection on authentication logs, with Prometheus metrics")
set(CPACK_PACKAGE_DESCRIPTION
    "tokenwatch follows authentication logs (API gateways, identity providers,\n\
HashiCorp Vault audit logs) as they are written, parses every line into an\n\
auth check and exposes auth_token_check and auth_token_rejected counters on\n\
/metrics for Prometheus. Raw tokens never leave the process.")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)   # tokenwatch_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Runtime library packages (never -dev) from dpkg-shlibdeps, which reads the
# binary's NEEDED entries and adds minimum versions; adduser for postinst.
find_program(TW_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(TW_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
else()
  # Debian 12 names, for builds without dpkg-dev.
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
      "adduser, libc6, libmicrohttpd12, libpcre2-8-0, libmaxminddb0, libcjson1, libsodium23, libcurl3-gnutls")
endif()
# The example hooks (share/tokenwatch/hooks) are python3 scripts.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "logrotate, prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${TW_PKG_DIR}/debian/postinst ${TW_PKG_DIR}/debian/prerm
    ${TW_PKG_DIR}/debian/postrm ${TW_GEN}/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
