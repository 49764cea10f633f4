#!/bin/sh
# install.sh: install cni-multi into a CNI_PATH directory, the way the reference plugins sit in
# /opt/cni/bin: the binary once, as `cni-multi`, plus one relative symlink `NAME -> cni-multi`
# per line of `cni-multi --list` (the applet table is the only list; there is no second one).
#
#   install.sh [--prefix DIR] [--binary PATH] [--force]    install or repair (idempotent)
#   install.sh [--prefix DIR] --uninstall                  remove our symlinks and the binary
#
# A regular file (e.g. the reference's own `bridge`) or a symlink to some other program is
# never replaced without --force; directories never are. Nothing changes when a conflict is
# found. Re-running changes nothing that is already right, fixes symlinks that point at an old
# or dangling cni-multi, and removes symlinks to cni-multi for applets that no longer exist.
set -eu

prog=install.sh
here=$(cd "$(dirname "$0")" && pwd)
prefix=/opt/cni/bin
binary=
force=0
uninstall=0

say() { printf '%s: %s\n' "$prog" "$*"; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
usage() {
  sed -n '6,7s/^#  *//p' "$0"
}

while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --force) force=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$prefix" ] || die "--prefix must not be empty"

# True when $1 is a symlink that names cni-multi (ours, even if stale or dangling).
points_at_us() {
  [ -L "$1" ] || return 1
  case $(readlink "$1") in
    cni-multi|*/cni-multi) return 0 ;;
    *) return 1 ;;
  esac
}

do_uninstall() {
  [ -d "$prefix" ] || { say "nothing installed in $prefix"; return 0; }
  removed=0
  for f in "$prefix"/*; do
    if points_at_us "$f"; then
      rm -f "$f"
      removed=$((removed + 1))
    fi
  done
  if [ -f "$prefix/cni-multi" ] && [ ! -L "$prefix/cni-multi" ]; then
    rm -f "$prefix/cni-multi"
    say "removed $prefix/cni-multi and $removed symlinks"
  else
    say "removed $removed symlinks (no cni-multi binary in $prefix)"
  fi
}

pick_binary() {
  if [ -z "$binary" ]; then
    # The static build (make static) is what ships; then the plain release and debug builds.
    if [ -x "$here/target/x86_64-unknown-linux-gnu/release/cni-multi" ]; then
      binary=$here/target/x86_64-unknown-linux-gnu/release/cni-multi
    elif [ -x "$here/target/release/cni-multi" ]; then
      binary=$here/target/release/cni-multi
    elif [ -x "$here/target/debug/cni-multi" ]; then
      binary=$here/target/debug/cni-multi
    else
      die "no built binary under $here/target; run 'make static' or pass --binary PATH"
    fi
  fi
  if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
    die "not an executable file: $binary"
  fi
  version=$("$binary" --version 2>/dev/null) || die "$binary --version failed"
  version=$(printf '%s\n' "$version" | head -n 1)
  case $version in
    cni-multi\ *) ;;
    *) die "$binary is not cni-multi (its --version says: $version)" ;;
  esac
}

# Reads the applet names and refuses, before anything changes, names that are unsafe as file
# names and files that are not ours (unless --force).
check_names() {
  if printf '%s\n' "$applets" | grep -q '[^A-Za-z0-9._-]'; then
    die "refusing odd applet names from --list: $(printf '%s' "$applets" | tr '\n' ' ')"
  fi
  [ ! -d "$prefix/cni-multi" ] || die "$prefix/cni-multi is a directory; remove it by hand"
  conflicts=
  for name in $applets; do
    case $name in
      cni-multi|.*) die "refusing applet name from --list: '$name'" ;;
    esac
    target=$prefix/$name
    if [ -d "$target" ]; then
      die "$target is (or points to) a directory; remove it by hand"
    elif points_at_us "$target" || { [ ! -e "$target" ] && [ ! -L "$target" ]; }; then
      :
    elif [ "$force" = 0 ]; then
      conflicts="$conflicts $name"
    fi
  done
  if [ -n "$conflicts" ]; then
    die "these exist in $prefix and are not cni-multi symlinks:$conflicts (rerun with --force to replace them)"
  fi
}

# Copies the binary unless an identical copy is there: temp file in the same dir + rename.
copy_binary() {
  dest=$prefix/cni-multi
  if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s "$binary" "$dest"; then
    say "binary unchanged: $dest"
    return 0
  fi
  tmp=$prefix/.cni-multi.tmp.$$
  trap 'rm -f "$tmp"' EXIT
  trap 'rm -f "$tmp"; exit 130' INT TERM
  cp "$binary" "$tmp"
  chmod 0755 "$tmp"
  mv -f "$tmp" "$dest"
  trap - EXIT INT TERM
  say "installed binary: $dest ($version)"
}

link_applets() {
  created=0 fixed=0 same=0 stale=0
  for name in $applets; do
    target=$prefix/$name
    if [ -L "$target" ] && [ "$(readlink "$target")" = cni-multi ]; then
      same=$((same + 1))
      continue
    fi
    if [ -e "$target" ] || [ -L "$target" ]; then
      fixed=$((fixed + 1))
    else
      created=$((created + 1))
    fi
    tmp=$prefix/.$name.tmp.$$
    ln -sf cni-multi "$tmp"
    mv -f "$tmp" "$target"
  done
  # Symlinks to cni-multi whose applet is gone (renamed or removed in this version).
  flat=" $(printf '%s' "$applets" | tr '\n' ' ') "
  for f in "$prefix"/*; do
    points_at_us "$f" || continue
    case $flat in
      *" ${f##*/} "*) ;;
      *) rm -f "$f"; stale=$((stale + 1)) ;;
    esac
  done
  say "$prefix: $created symlinks created, $fixed replaced, $same unchanged, $stale stale removed"
}

if [ "$uninstall" = 1 ]; then
  do_uninstall
  exit 0
fi
pick_binary
applets=$("$binary" --list) || die "$binary --list failed"
check_names
mkdir -p "$prefix"
copy_binary
link_applets
[ "$("$prefix/cni-multi" --list)" = "$applets" ] || die "the installed $prefix/cni-multi does not run as expected"
