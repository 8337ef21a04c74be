// The pod sandbox's process: holds a pod's namespaces open until the kubelet stops the pod.
module tpserve.local/cluster/pause

go 1.26.0
