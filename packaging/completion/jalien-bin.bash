# bash completion for jalien-bin (made by `jalien-bin completion bash`)
# install: jalien-bin completion bash > ~/.local/share/bash-completion/completions/jalien-bin
# or: source <(jalien-bin completion bash)
_jalien_bin_grid() {  # grid paths (or command names) from the running jBox or central
    local IFS=$'\n' names
    names=($(command "${COMP_WORDS[0]}" __complete "$@" 2>/dev/null))
    COMPREPLY+=($(compgen -W "${names[*]}" -- "$cur"))
    local w
    for w in "${COMPREPLY[@]}"; do
        [[ $w == */ ]] && compopt -o nospace 2>/dev/null && break
    done
}

_jalien_bin() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local sub="" i
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            --role|--role=*) sub=role; break ;;
            -*) ;;
            *) [[ -z $sub ]] && sub="${COMP_WORDS[i]}" ;;
        esac
    done
    if [[ $prev == --role ]]; then
        COMPREPLY=($(compgen -W "jcentral jbox se jobagent vobox" -- "$cur"))
        return
    fi
    case "$sub" in
        "")
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "--role --version --help -json" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "shell setup proxy cp completion" -- "$cur"))
                _jalien_bin_grid --commands
            fi ;;
        role) COMPREPLY=($(compgen -W "-h --help --version --role --config --home --ws-port --binary-port --workers --listen --log-level --central --token-hours --detach --log-file --password-stdin" -- "$cur")) ;;
        setup) COMPREPLY=($(compgen -W "-h --help --home --login --globus-dir --password-stdin --no-password --host --force" -- "$cur")) ;;
        shell) COMPREPLY=($(compgen -W "--password-stdin -h --help" -- "$cur")) ;;
        completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")) ;;
        proxy)
            if [[ $prev == proxy ]]; then
                COMPREPLY=($(compgen -W "destroy info init renew" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "-h --help -valid -bits -limited -out --password-stdin -min -file -timeleft -exists" -- "$cur"))
            fi ;;
        cp)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "-h --help -T -S -retry -stall" -- "$cur"))
            else
                _jalien_bin_grid -- "$cur"
            fi ;;
        *)  # a grid command: its arguments are grid paths
            [[ $cur == -* ]] || _jalien_bin_grid -- "$cur" ;;
    esac
}
complete -F _jalien_bin jalien-bin
