#!/usr/bin/env bash
# Install Debian's GSHHG coastlines and borders for the dataset card's map when they are missing (idempotent).
#
# The card reads /usr/share/gmt-gshhg/binned_{GSHHS,border}_{c,l,i}.nc with h5py; nothing is downloaded when a
# card is made. Without this package the card still renders, with a plain latitude/longitude plot and a line
# saying no coastline data was found. Needs root or sudo (and the Debian mirror) only when the files are missing.
set -euo pipefail

if compgen -G "/usr/share/gmt-gshhg/binned_GSHHS_*.nc" >/dev/null; then
    echo "GSHHG coastlines present: /usr/share/gmt-gshhg"
    exit 0
fi
sudo=""
if [[ "$(id -u)" != "0" ]]; then
    if ! command -v sudo >/dev/null; then
        echo "GSHHG coastlines are missing and this is not root: run 'apt-get install -y gmt-gshhg-low' as root" >&2
        exit 1
    fi
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq gmt-gshhg-low >/dev/null
echo "GSHHG coastlines installed: $(ls /usr/share/gmt-gshhg | tr '\n' ' ')"
