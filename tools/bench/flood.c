/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * flood.c - replay one TCP segment of a given IPv4 5-tuple out of an
 * interface as fast as the kernel takes it (or at a set rate), for
 * tools/bench/xdp_flood.sh: "a blocked phone's flow floods the gateway".
 *
 * usage: flood IFNAME DST_MAC SADDR SPORT DADDR DPORT SECONDS [PPS [PAYLOAD]]
 *   PPS 0 = as fast as possible; PAYLOAD = TCP payload bytes (default 64).
 * Prints "packets=N seconds=S pps=P" on stdout.
 *
 * Each frame is an ACK|PSH data segment with valid IP and TCP checksums,
 * so what the XDP filter does not drop is processed by the gateway's TCP
 * stack like a real segment (out of window: it is answered or discarded
 * there). Frames go out through AF_PACKET with PACKET_QDISC_BYPASS in
 * sendmmsg batches: the generator costs little per packet and the veth
 * delivers them to the peer's XDP hook. `make` builds it (build/bench/flood);
 * it needs nothing but libc; run it as root in the phone netns.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLOOD_BATCH	64
#define FLOOD_MAX_FRAME 1514

static double flood_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* RFC 1071 sum of len bytes (len even), not yet folded. */
static uint32_t flood_sum(const void *p, size_t len, uint32_t sum)
{
	const uint16_t *w = p;

	for (size_t i = 0; i < len / 2; i++)
		sum += w[i];
	return sum;
}

static uint16_t flood_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static int flood_mac(const char *s, uint8_t mac[6])
{
	unsigned int b[6];

	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	return 0;
}

/* Ethernet + IPv4 + TCP (no options) + payload; returns the frame length. */
static size_t flood_frame(uint8_t *f, const uint8_t src_mac[6], const uint8_t dst_mac[6],
			  struct in_addr sa, uint16_t sport, struct in_addr da, uint16_t dport,
			  size_t payload)
{
	struct ether_header *eth = (struct ether_header *)f;
	struct iphdr *ip = (struct iphdr *)(f + sizeof(*eth));
	struct tcphdr *tcp = (struct tcphdr *)(ip + 1);
	uint16_t tcp_len = (uint16_t)(sizeof(*tcp) + payload);
	uint32_t sum;

	memset(f, 0, sizeof(*eth) + sizeof(*ip) + tcp_len);
	memcpy(eth->ether_dhost, dst_mac, 6);
	memcpy(eth->ether_shost, src_mac, 6);
	eth->ether_type = htons(ETHERTYPE_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = htons((uint16_t)(sizeof(*ip) + tcp_len));
	ip->frag_off = htons(IP_DF);
	ip->ttl = 64;
	ip->protocol = IPPROTO_TCP;
	ip->saddr = sa.s_addr;
	ip->daddr = da.s_addr;
	ip->check = flood_fold(flood_sum(ip, sizeof(*ip), 0));
	tcp->source = htons(sport);
	tcp->dest = htons(dport);
	tcp->seq = htonl(0x10000000); /* far outside the real flow's window */
	tcp->ack_seq = htonl(1);
	tcp->doff = 5;
	tcp->ack = 1;
	tcp->psh = 1;
	tcp->window = htons(512);
	memset(tcp + 1, 'x', payload);
	sum = flood_sum(&ip->saddr, 8, 0); /* pseudo header */
	sum += htons(IPPROTO_TCP) + htons(tcp_len);
	tcp->check = flood_fold(flood_sum(tcp, tcp_len + (tcp_len & 1), sum));
	return sizeof(*eth) + sizeof(*ip) + tcp_len;
}

int main(int argc, char **argv)
{
	static uint8_t frame[FLOOD_MAX_FRAME + 1];
	struct mmsghdr msgs[FLOOD_BATCH];
	struct sockaddr_ll sll = {0};
	struct ifreq ifr = {0};
	uint8_t src_mac[6], dst_mac[6];
	struct in_addr sa, da;
	struct iovec iov;
	unsigned long long sent = 0;
	double secs, pps = 0, t0, now;
	size_t payload = 64, len;
	int fd, one = 1;

	if (argc < 8) {
		fprintf(stderr, "usage: flood IFNAME DST_MAC SADDR SPORT DADDR DPORT SECONDS [PPS "
				"[PAYLOAD]]\n");
		return 2;
	}
	secs = atof(argv[7]);
	if (argc > 8)
		pps = atof(argv[8]);
	if (argc > 9)
		payload = (size_t)atol(argv[9]);
	if (flood_mac(argv[2], dst_mac) || !inet_aton(argv[3], &sa) || !inet_aton(argv[5], &da) ||
	    secs <= 0 || payload > FLOOD_MAX_FRAME - 54) {
		fprintf(stderr, "flood: bad arguments\n");
		return 2;
	}
	/* Protocol 0: this socket only sends, it never receives a copy of traffic. */
	fd = socket(AF_PACKET, SOCK_RAW, 0);
	if (fd < 0) {
		perror("flood: socket");
		return 1;
	}
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", argv[1]);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
		perror("flood: SIOCGIFHWADDR");
		return 1;
	}
	memcpy(src_mac, ifr.ifr_hwaddr.sa_data, 6);
	/* Best effort: without it frames go through the (noqueue) qdisc path. */
	setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = (int)if_nametoindex(argv[1]);
	sll.sll_halen = 6;
	memcpy(sll.sll_addr, dst_mac, 6);
	if (!sll.sll_ifindex) {
		perror("flood: if_nametoindex");
		return 1;
	}
	len = flood_frame(frame, src_mac, dst_mac, sa, (uint16_t)atoi(argv[4]), da,
			  (uint16_t)atoi(argv[6]), payload);
	iov.iov_base = frame;
	iov.iov_len = len;
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < FLOOD_BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
		msgs[i].msg_hdr.msg_name = &sll;
		msgs[i].msg_hdr.msg_namelen = sizeof(sll);
	}
	t0 = now = flood_now();
	while (now - t0 < secs) {
		int n = sendmmsg(fd, msgs, FLOOD_BATCH, 0);

		if (n < 0 && errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
			perror("flood: sendmmsg");
			return 1;
		}
		if (n > 0)
			sent += (unsigned long long)n;
		now = flood_now();
		/* Rate limit: sleep off whatever we are ahead of schedule. */
		if (pps > 0 && (double)sent / pps > now - t0) {
			double ahead = (double)sent / pps - (now - t0);
			struct timespec ts = {(time_t)ahead,
					      (long)((ahead - (double)(time_t)ahead) * 1e9)};

			nanosleep(&ts, NULL);
			now = flood_now();
		}
	}
	printf("packets=%llu seconds=%.2f pps=%.0f\n", sent, now - t0, (double)sent / (now - t0));
	close(fd);
	return 0;
}
