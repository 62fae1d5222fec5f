# Tab completion for kubenet in bash: invoke's own (tasks and options), plus the
# cluster's VM names after --name. From ~/.bashrc:
#   source /path/to/kubenet/scripts/completion.bash
# It completes `invoke`, `inv` and `kubenet`.

_kubenet_complete() {
    local program=${COMP_WORDS[0]} current=${COMP_WORDS[COMP_CWORD]} previous=${COMP_WORDS[COMP_CWORD-1]}
    if [[ $previous == --name ]]; then
        # the VM names of the cluster file the command would use (--config, $KUBENET_CONFIG or ./cluster.yaml)
        local config=() i
        for ((i = 1; i < COMP_CWORD; i++)); do
            [[ ${COMP_WORDS[i]} == --config ]] && config=(--config "${COMP_WORDS[i+1]}")
        done
        COMPREPLY=($(compgen -W "$("$program" ls --names "${config[@]}" 2>/dev/null)" -- "$current"))
        return 0
    fi
    COMPREPLY=($(compgen -W "$("$program" --complete -- "${COMP_WORDS[@]}" 2>/dev/null)" -- "$current"))
}

complete -F _kubenet_complete -o default invoke inv kubenet
