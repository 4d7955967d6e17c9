# On the device machine, sourced by each `run` call of pack.sh's plan: `. examples/policy_gpu/unpack.sh .gpu/K`.
# Keeps this call's part in /tmp/parts; once every part is there, unpacks them into /tmp/m (base.gguf,
# tokens.npz.xz, init_adapter/, wheels/) and installs the wheels into /tmp/site. Sourced, so that PYTHONPATH
# reaches the training command that follows in the same call.
mkdir -p /tmp/parts && cp "$1"/part.* /tmp/parts/ || return 1
want=$(cat "$1/parts")
have=$(ls /tmp/parts | wc -l)
if [ "$have" -lt "$want" ]; then
    echo "unpack: part $have of $want kept in /tmp/parts; make the next call now"
    return 0
fi
if [ ! -f /tmp/m/base.gguf ]; then
    mkdir -p /tmp/m && cat $(ls /tmp/parts/part.* | sort) | tar -C /tmp/m -xf - || return 1
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        /tmp/m/wheels/*.whl || return 1
fi
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
echo "unpack: /tmp/m holds $(ls /tmp/m | tr '\n' ' ')"
