"""The names of every ``spec`` field of Calico's FelixConfiguration (projectcalico.org/v3,
read from the CRD schema on Calico's main branch after v3.32).

tortie acts on a few of them (``tortie.model.felixconfig.ACTED_ON``); the others are
stored and shown again unchanged.  A name not in that schema is refused on input, so a
misspelt ``natOutgoingAdress`` is caught instead of being kept and never acted on.
"""

from __future__ import annotations

_NAMES = """
    allowIPIPPacketsFromWorkloads allowVXLANPacketsFromWorkloads awsSrcDstCheck
    bpfAttachType bpfCTLBLogFilter bpfConnectTimeLoadBalancing
    bpfConnectTimeLoadBalancingEnabled bpfConntrackLogLevel bpfConntrackMode
    bpfConntrackTimeouts bpfDSROptoutCIDRs bpfDataIfacePattern bpfDisableGROForIfaces
    bpfDisableUnprivileged bpfEnabled bpfEnforceRPF bpfExcludeCIDRsFromNAT
    bpfExportBufferSizeMB bpfExtToServiceConnmark bpfExternalServiceMode
    bpfForceTrackPacketsFromIfaces bpfHostConntrackBypass bpfHostNetworkedNATWithoutCTLB
    bpfIPFragTimeout bpfIPFragmentReassemblyEnabled bpfJITHardening bpfKubeProxyHealthzPort
    bpfKubeProxyIptablesCleanupEnabled bpfKubeProxyMinSyncPeriod bpfL3IfacePattern
    bpfLogFilters bpfLogLevel bpfMaglevMaxEndpointsPerService bpfMaglevMaxServices
    bpfMapSizeConntrack bpfMapSizeConntrackCleanupQueue bpfMapSizeConntrackScaling
    bpfMapSizeIPSets bpfMapSizeIfState bpfMapSizeNATAffinity bpfMapSizeNATBackend
    bpfMapSizeNATFrontend bpfMapSizePerCpuConntrack bpfMapSizeRoute bpfOverlayHostSourceIP
    bpfPSNATPorts bpfPolicyDebugEnabled bpfProfiling bpfRedirectToPeer cgroupV2Path
    chainInsertMode dataplaneDriver dataplaneWatchdogTimeout debugDisableLogDropping
    debugHost debugMemoryProfilePath debugPort debugSimulateCalcGraphHangAfter
    debugSimulateDataplaneApplyDelay debugSimulateDataplaneHangAfter
    defaultEndpointToHostAction deviceRouteProtocol deviceRouteSourceAddress
    deviceRouteSourceAddressIPv6 disableConntrackInvalidCheck endpointReportingDelay
    endpointReportingEnabled endpointStatusPathPrefix externalNodesList
    failsafeInboundHostPorts failsafeOutboundHostPorts featureDetectOverride featureGates
    floatingIPs flowLogsCollectorDebugTrace flowLogsFlushInterval flowLogsGoldmaneServer
    flowLogsLocalReporter flowLogsPolicyEvaluationMode genericXDPEnabled goGCThreshold
    goMaxProcs goMemoryLimitMB healthEnabled healthHost healthPort healthTimeoutOverrides
    interfaceExclude interfacePrefix interfaceRefreshInterval ipForwarding ipipEnabled
    ipipMTU ipsetsRefreshInterval iptablesBackend iptablesFilterAllowAction
    iptablesFilterDenyAction iptablesLockProbeInterval iptablesMangleAllowAction
    iptablesMarkMask iptablesNATOutgoingInterfaceFilter iptablesPostWriteCheckInterval
    iptablesRefreshInterval ipv4ElevatedRoutePriority ipv4NormalRoutePriority
    ipv6ElevatedRoutePriority ipv6NormalRoutePriority ipv6Support istioAmbientMode
    istioDSCPMark kubeNodePortRanges liveMigrationRouteConvergenceTime
    localSubnetL2Reachability localSubnetL2ReachabilityRefreshInterval logActionRateLimit
    logActionRateLimitBurst logDebugFilenameRegex logFilePath logPrefix logSeverityFile
    logSeverityScreen logSeveritySys maxIpsetSize metadataAddr metadataPort mtuIfacePattern
    natOutgoingAddress natOutgoingExclusions natPortRange netlinkTimeout
    nftablesFilterAllowAction nftablesFilterDenyAction nftablesFlowTableDataIfacePattern
    nftablesFlowTableOffload nftablesMangleAllowAction nftablesMarkMask nftablesMode
    nftablesRefreshInterval nodeSelector openstackRegion policySyncPathPrefix
    programClusterRoutes prometheusGoMetricsEnabled prometheusMetricsCAFile
    prometheusMetricsCertFile prometheusMetricsClientAuth prometheusMetricsEnabled
    prometheusMetricsHost prometheusMetricsKeyFile prometheusMetricsPort
    prometheusProcessMetricsEnabled prometheusWireGuardMetricsEnabled removeExternalRoutes
    reportingInterval reportingTTL requireMTUFile routeRefreshInterval routeSource
    routeSyncDisabled routeTableRange routeTableRanges serviceLoopPrevention
    sidecarAccelerationEnabled usageReportingEnabled usageReportingInitialDelay
    usageReportingInterval useInternalDataplaneDriver vxlanEnabled vxlanMTU vxlanMTUV6
    vxlanPort vxlanVNI windowsManageFirewallRules wireguardEnabled wireguardEnabledV6
    wireguardHostEncryptionEnabled wireguardInterfaceName wireguardInterfaceNameV6
    wireguardKeepAlive wireguardListeningPort wireguardListeningPortV6 wireguardMTU
    wireguardMTUV6 wireguardRoutingRulePriority wireguardThreadingEnabled
    workloadSourceSpoofing xdpEnabled xdpRefreshInterval
"""

CALICO_FIELDS = frozenset(_NAMES.split())
