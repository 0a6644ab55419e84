#!/bin/sh
# kconfig-check.sh FRAGMENT CONFIG: every option a Kconfig fragment sets must be in the final .config.
# "CONFIG_X=v" must appear verbatim; "# CONFIG_X is not set" must appear, or CONFIG_X must be absent
# (an option whose dependencies are off is not written, which also means "n").
# Prints each option that did not stick and exits 1 if there is any.
set -eu
frag=$1 config=$2
bad=0
while IFS= read -r line; do
    case $line in
        CONFIG_*=*)
            opt=${line%%=*}
            if ! grep -qxF -- "$line" "$config"; then
                got=$(grep -E "^(# )?$opt[= ]" "$config" || true)
                echo "kconfig-check: $frag: wanted '$line', got '${got:-absent}'" >&2
                bad=1
            fi ;;
        "# CONFIG_"*" is not set")
            opt=${line#\# }
            opt=${opt%% *}
            if grep -qE "^$opt=" "$config"; then
                echo "kconfig-check: $frag: wanted '$line', got '$(grep -E "^$opt=" "$config")'" >&2
                bad=1
            fi ;;
    esac
done < "$frag"
if [ "$bad" = 0 ]; then
    echo "kconfig-check: $frag: all options stuck"
fi
exit "$bad"
